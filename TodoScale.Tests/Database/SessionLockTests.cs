using TodoScale.Archiver.Database;
using TodoScale.Data.Locking;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Database;

/// <summary>The archiver's one-at-a-time guard against a real PostgreSQL: taken once, refused to a second session, released on dispose.</summary>
[Collection(PostgresCollection.Name)]
public sealed class SessionLockTests(PostgresServer server)
{
    private const long Key = 0x54535445; // "TSTE"

    [Fact]
    public async Task A_lock_is_refused_to_a_second_session_and_released_on_dispose_while_its_connection_stays_in_the_pool()
    {
        var db = await server.FreshMigratedDatabaseAsync("session_lock");
        await using var first = ArchiverDataSource.Create(db, role: null);
        await using var second = ArchiverDataSource.Create(db + ";Application Name=second", role: null);
        var held = $"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {Key & 0xFFFFFFFF} AND granted";

        var taken = await SessionLock.TryTakeAsync(first, Key, CancellationToken.None);
        Assert.NotNull(taken);
        var pid = taken.Connection.ProcessID;
        Assert.Null(await SessionLock.TryTakeAsync(second, Key, CancellationToken.None));
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db, held));

        await taken.DisposeAsync();
        // The session lives on in the pool (Close does not end it), without the lock.
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, held));
        await using var again = await SessionLock.TryTakeAsync(second, Key, CancellationToken.None);
        Assert.NotNull(again);

        // A pair of int keys, as cold storage locks a month.
        await using var month = await SessionLock.TryTakeAsync(first, 7, 202612, CancellationToken.None);
        Assert.NotNull(month);
        Assert.Null(await SessionLock.TryTakeAsync(second, 7, 202612, CancellationToken.None));
    }
}
