using Npgsql;

namespace TodoScale.Data.Locking;

/// <summary>
/// A PostgreSQL session advisory lock on a connection of its own, released explicitly when disposed: a pooled
/// connection's session (and every advisory lock it holds) outlives Close, so a lock left to the connection's end
/// would stay held while the connection idles in the pool. One helper for every "only one at a time"
/// guard (migrate, the archiver's partitions, the legacy backfill, the partition split, cold storage per month); <see cref="Connection"/> may do the
/// guarded work itself.
/// </summary>
public sealed class SessionLock : IAsyncDisposable
{
    private readonly string _unlock;
    private readonly Action<NpgsqlCommand> _key;

    private SessionLock(NpgsqlConnection connection, string unlock, Action<NpgsqlCommand> key) =>
        (Connection, _unlock, _key) = (connection, unlock, key);

    /// <summary>The session that holds the lock.</summary>
    public NpgsqlConnection Connection { get; }

    /// <summary>Takes the lock on one bigint key, or returns null (nothing held, the connection closed) when another session has it.</summary>
    public static Task<SessionLock?> TryTakeAsync(NpgsqlDataSource source, long key, CancellationToken cancellationToken) =>
        TryTakeAsync(source, "pg_try_advisory_lock(@key)", "pg_advisory_unlock(@key)",
            command => command.Parameters.Add(new NpgsqlParameter<long>("key", key)), cancellationToken);

    /// <summary>Takes the lock on a (class, object) pair of int keys, or returns null when another session has it.</summary>
    public static Task<SessionLock?> TryTakeAsync(NpgsqlDataSource source, int lockClass, int lockObject, CancellationToken cancellationToken) =>
        TryTakeAsync(source, "pg_try_advisory_lock(@class, @object)", "pg_advisory_unlock(@class, @object)",
            command =>
            {
                command.Parameters.Add(new NpgsqlParameter<int>("class", lockClass));
                command.Parameters.Add(new NpgsqlParameter<int>("object", lockObject));
            }, cancellationToken);

    /// <summary>
    /// Takes the lock on one bigint key, waiting up to <paramref name="wait"/> for another session to release it
    /// (polling, so the wait is bounded on any server); null when it is still held then. <paramref name="waiting"/>
    /// runs once, when the first try finds it held.
    /// </summary>
    public static async Task<SessionLock?> TakeWithinAsync(
        NpgsqlDataSource source, long key, TimeSpan wait, Action waiting, TimeProvider clock, CancellationToken cancellationToken)
    {
        var started = clock.GetTimestamp();
        for (var first = true; ; first = false)
        {
            if (await TryTakeAsync(source, key, cancellationToken) is { } taken)
            {
                return taken;
            }

            if (clock.GetElapsedTime(started) >= wait)
            {
                return null;
            }

            if (first)
            {
                waiting();
            }

            await Task.Delay(TimeSpan.FromMilliseconds(250), clock, cancellationToken);
        }
    }

    private static async Task<SessionLock?> TryTakeAsync(
        NpgsqlDataSource source, string tryLock, string unlock, Action<NpgsqlCommand> key, CancellationToken cancellationToken)
    {
        var connection = await source.OpenConnectionAsync(cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand($"SELECT {tryLock}", connection);
            key(command);
            if ((bool)(await command.ExecuteScalarAsync(cancellationToken))!)
            {
                return new SessionLock(connection, unlock, key);
            }
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }

        await connection.DisposeAsync();
        return null;
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await using var command = new NpgsqlCommand($"SELECT {_unlock}", Connection);
            _key(command);
            await command.ExecuteScalarAsync(CancellationToken.None);
        }
        catch (NpgsqlException)
        {
            // A broken connection is not returned to the pool: its session, and the lock, ended with it.
        }
        finally
        {
            await Connection.DisposeAsync();
        }
    }
}
