using System.Diagnostics;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Api.Caching;
using TodoScale.Api.Reads;
using TodoScale.Api.Resilience;
using TodoScale.Api.Telemetry;
using TodoScale.Data;
using TodoScale.Data.Tenancy;

namespace TodoScale.Api.Writes;

/// <summary>
/// Opens a user's write: a primary transaction with app.user_id set (on the legacy table's views while the API
/// serves from `todos`, see <see cref="Serving"/>). Disposing without <see cref="UserWrite.CommitAsync"/>
/// rolls it back (every 4xx after a check); committing records the commit position for read-your-writes and
/// invalidates the user's cached pages.
/// </summary>
public sealed class TenantWrites(
    IDbContextFactory<TodoDbContext> contexts,
    UserStateStore userState,
    DatabaseMonitor monitor,
    IHttpContextAccessor http,
    ApiMetrics metrics)
{
    /// <summary>Opens the write; while the primary restarts, waits for it (<see cref="PrimaryRestart"/>): nothing is sent yet.</summary>
    public Task<UserWrite> BeginAsync(Guid userId, string operation, CancellationToken cancellationToken) =>
        PrimaryRestart.Pipeline.ExecuteAsync(async token =>
        {
            var db = await contexts.CreateDbContextAsync(token);
            try
            {
                var started = Stopwatch.GetTimestamp();
                // Opened here, the connection stays open after the commit (EF would close one it opened for the
                // transaction), so the commit position is read on the same session.
                await db.Database.OpenConnectionAsync(token);
                var serving = await monitor.ServingAsync(token);
                var transaction = await db.BeginTenantTransactionAsync(userId, token, fromLegacy: serving.FromLegacy);
                return new UserWrite(db, transaction, userId, operation, started, this);
            }
            catch (Exception e)
            {
                PrimaryRestart.Forget(db.Database.GetDbConnection(), e);
                await db.DisposeAsync();
                throw;
            }
        }, cancellationToken).AsTask();

    internal async Task CommittedAsync(TodoDbContext db, Guid userId, string operation, long started)
    {
        metrics.RecordQuery(
            Stopwatch.GetElapsedTime(started), monitor.Schema.PartitionOf(userId),
            "todos_active", ApiMetrics.Targets.Primary, operation);
        ulong lsn;
        try
        {
            var connection = (NpgsqlConnection)db.Database.GetDbConnection();
            await using var command = new NpgsqlCommand("SELECT pg_current_wal_lsn()", connection);
            lsn = (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync(CancellationToken.None))!;
        }
        catch (NpgsqlException)
        {
            // Committed, but where is unknown: this user reads from the primary until the position expires.
            lsn = ClientSession.Unknown;
        }

        ClientSession.Of(http.HttpContext)?.Shown(lsn);
        await userState.RecordWriteAsync(userId, lsn);
    }
}

/// <summary>One user's open write transaction on the primary.</summary>
public sealed class UserWrite(
    TodoDbContext db, IDbContextTransaction transaction, Guid userId, string operation, long started, TenantWrites owner) : IAsyncDisposable
{
    public TodoDbContext Db => db;

    public Guid UserId => userId;

    public async Task CommitAsync(CancellationToken cancellationToken)
    {
        await db.SaveChangesAsync(cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        await owner.CommittedAsync(db, userId, operation, started);
    }

    public async ValueTask DisposeAsync()
    {
        await transaction.DisposeAsync();
        await db.DisposeAsync();
    }
}
