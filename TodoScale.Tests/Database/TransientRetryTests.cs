using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Database;

/// <summary>
/// The archiver's one retry policy against failures a real PostgreSQL raises: a lock timeout is retried until the
/// lock is free, a failure of the caller's own data is not retried, and the last attempt's failure is the caller's.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class TransientRetryTests(PostgresServer server)
{
    [Fact]
    public async Task A_lock_timeout_is_retried_until_the_holder_lets_go_and_a_data_error_is_not_retried()
    {
        var db = await server.CreateDatabaseAsync("transient_retry");
        await Sql.ExecuteAsync(db, "CREATE TABLE t (id int PRIMARY KEY, n int NOT NULL); INSERT INTO t VALUES (1, 0)");
        await using var source = NpgsqlDataSource.Create(db);

        // Another session holds the row: each attempt gives up after 20 ms (55P03) until it commits after the second.
        await using var holder = await source.OpenConnectionAsync();
        var held = await holder.BeginTransactionAsync();
        await using (var take = new NpgsqlCommand("SELECT n FROM t WHERE id = 1 FOR UPDATE", holder, held))
        {
            await take.ExecuteScalarAsync();
        }

        var attempts = 0;
        var failures = new List<string>();
        await TransientRetry.Create(5, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(5), TimeProvider.System).ExecuteAsync(async token =>
        {
            attempts++;
            await using var connection = await source.OpenConnectionAsync(token);
            await using var transaction = await connection.BeginTransactionAsync(token);
            try
            {
                await using var update = new NpgsqlCommand("SET LOCAL lock_timeout = '20ms'; UPDATE t SET n = n + 1 WHERE id = 1", connection, transaction);
                await update.ExecuteNonQueryAsync(token);
                await transaction.CommitAsync(token);
            }
            catch (PostgresException e)
            {
                failures.Add(e.SqlState);
                if (failures.Count == 2)
                {
                    await held.CommitAsync(token);
                }

                throw;
            }
        }, CancellationToken.None);

        Assert.Equal(3, attempts);
        Assert.Equal([PostgresErrorCodes.LockNotAvailable, PostgresErrorCodes.LockNotAvailable], failures);
        Assert.Equal(1, await Sql.ScalarAsync<int>(db, "SELECT n FROM t WHERE id = 1"));

        // A duplicate key is the data's fault: one attempt, and the server's error is the caller's.
        attempts = 0;
        var duplicate = await Assert.ThrowsAsync<PostgresException>(async () =>
            await TransientRetry.Create(5, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(5), TimeProvider.System).ExecuteAsync(async token =>
            {
                attempts++;
                await using var insert = source.CreateCommand("INSERT INTO t VALUES (1, 0)");
                await insert.ExecuteNonQueryAsync(token);
            }, CancellationToken.None));
        Assert.Equal(PostgresErrorCodes.UniqueViolation, duplicate.SqlState);
        Assert.Equal(1, attempts);
    }

    [Fact]
    public async Task The_last_attempts_failure_is_the_callers_error()
    {
        var db = await server.CreateDatabaseAsync("transient_retry_last");
        await Sql.ExecuteAsync(db, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
        await using var source = NpgsqlDataSource.Create(db);
        await using var holder = await source.OpenConnectionAsync();
        await using var held = await holder.BeginTransactionAsync();
        await using (var take = new NpgsqlCommand("LOCK TABLE t IN ACCESS EXCLUSIVE MODE", holder, held))
        {
            await take.ExecuteNonQueryAsync();
        }

        var attempts = 0;
        var failure = await Assert.ThrowsAsync<PostgresException>(async () =>
            await TransientRetry.Create(3, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(5), TimeProvider.System).ExecuteAsync(async token =>
            {
                attempts++;
                await using var connection = await source.OpenConnectionAsync(token);
                await using var transaction = await connection.BeginTransactionAsync(token);
                await using var read = new NpgsqlCommand("SET LOCAL lock_timeout = '20ms'; SELECT count(*) FROM t", connection, transaction);
                await read.ExecuteScalarAsync(token);
            }, CancellationToken.None));
        Assert.Equal(PostgresErrorCodes.LockNotAvailable, failure.SqlState);
        Assert.Equal(3, attempts);
        Assert.True(TransientRetry.IsTransient(failure));
    }
}
