using System.Diagnostics;
using Npgsql;

namespace TodoScale.Archiver.Archiving;

/// <summary>What a lock-bound step cost: the longest one attempt took (the longest the application could have waited on it) and how many it took.</summary>
public readonly record struct LockBoundResult(TimeSpan LongestAttempt, int Attempts);

/// <summary>
/// A DDL step on a table that serves traffic: one transaction under lock_timeout, so a step waiting for its lock
/// never queues the application's statements behind itself for longer than that; a lock timeout rolls back and
/// retries after a growing pause. The last attempt's failure is the caller's error.
/// </summary>
public static class LockBoundStep
{
    public static async Task<LockBoundResult> RunAsync(
        NpgsqlDataSource dataSource, TimeSpan lockTimeout, int attempts, TimeProvider clock,
        Func<NpgsqlConnection, NpgsqlTransaction, Task> step, CancellationToken cancellationToken)
    {
        var longest = TimeSpan.Zero;
        for (var attempt = 1; ; attempt++)
        {
            await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            var started = Stopwatch.GetTimestamp();
            try
            {
                await using (var timeout = new NpgsqlCommand($"SET LOCAL lock_timeout = '{Math.Max(1, (int)lockTimeout.TotalMilliseconds)}ms'", connection, transaction))
                {
                    await timeout.ExecuteNonQueryAsync(cancellationToken);
                }

                await step(connection, transaction);
                await transaction.CommitAsync(cancellationToken);
                return new LockBoundResult(Max(longest, Stopwatch.GetElapsedTime(started)), attempt);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.LockNotAvailable && attempt < attempts)
            {
                longest = Max(longest, Stopwatch.GetElapsedTime(started));
                await transaction.RollbackAsync(CancellationToken.None);
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(200 * attempt, 2_000) + Random.Shared.Next(50)), clock, cancellationToken);
            }
        }

        static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;
    }
}
