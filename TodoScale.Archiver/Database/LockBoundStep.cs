using System.Diagnostics;
using Npgsql;

namespace TodoScale.Archiver.Database;

/// <summary>What a lock-bound step cost: the longest one attempt took (the longest the application could have waited on it) and how many it took.</summary>
public readonly record struct LockBoundResult(TimeSpan LongestAttempt, int Attempts);

/// <summary>
/// A DDL step on a table that serves traffic: one transaction under lock_timeout, so a step waiting for its lock
/// never queues the application's statements behind itself for longer than that; a lock timeout (or deadlock) rolls
/// back and retries after a growing pause (<see cref="TransientRetry"/>). The last attempt's failure is the caller's error.
/// </summary>
public static class LockBoundStep
{
    public static async Task<LockBoundResult> RunAsync(
        NpgsqlDataSource dataSource, TimeSpan lockTimeout, int attempts, TimeProvider clock,
        Func<NpgsqlConnection, NpgsqlTransaction, Task> step, CancellationToken cancellationToken)
    {
        var longest = TimeSpan.Zero;
        var tried = 0;
        await TransientRetry.Create(attempts, TimeSpan.FromMilliseconds(200), TimeSpan.FromSeconds(2), clock).ExecuteAsync(async token =>
        {
            tried++;
            await using var connection = await dataSource.OpenConnectionAsync(token);
            await using var transaction = await connection.BeginTransactionAsync(token);
            var started = Stopwatch.GetTimestamp();
            try
            {
                await using (var timeout = new NpgsqlCommand($"SET LOCAL lock_timeout = '{Math.Max(1, (int)lockTimeout.TotalMilliseconds)}ms'", connection, transaction))
                {
                    await timeout.ExecuteNonQueryAsync(token);
                }

                await step(connection, transaction);
                await transaction.CommitAsync(token);
            }
            finally
            {
                var elapsed = Stopwatch.GetElapsedTime(started);
                longest = elapsed > longest ? elapsed : longest;
            }
        }, cancellationToken);
        return new LockBoundResult(longest, tried);
    }
}
