using System.Diagnostics;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Microsoft.Extensions.Options;
using Npgsql;
using TodoScale.Api.Caching;
using TodoScale.Api.Resilience;
using TodoScale.Api.Telemetry;
using TodoScale.Data;
using TodoScale.Data.Tenancy;

namespace TodoScale.Api.Reads;

/// <summary>What a read is, for routing, caching and its latency histogram.</summary>
/// <param name="Operation">A low-cardinality name: list_todos, get_todo, ...</param>
/// <param name="Table">active, archived (a list that merges both says archived), projects, ai_interactions.</param>
/// <param name="PageKey">Set for a first page that may be cached: the normalised query.</param>
public readonly record struct ReadSpec(string Operation, string Table, string? PageKey = null);

/// <summary>A read's result and where it came from (primary, replica or cache).</summary>
public readonly record struct Routed<T>(T Value, string Source);

/// <summary>
/// Runs a user's read where it is both cheapest and correct: the cache when it holds a page that reflects the
/// user's last write; else the replica when it is up, its lag is under the limit and it has replayed past the
/// user's last commit; else the primary. A replica that fails mid-read is marked down and the read is retried
/// on the primary, so a replica outage is never an error.
/// </summary>
public sealed class ReadRouter(
    IDbContextFactory<TodoDbContext> primaryContexts,
    IDbContextFactory<ReplicaDbContext> replicaContexts,
    DatabaseMonitor monitor,
    UserStateStore userState,
    IOptions<ReadOptions> options,
    IOptions<JsonOptions> json,
    IHttpContextAccessor http,
    ApiMetrics metrics)
{
    /// <summary>A read through EF Core in a transaction that names its tenant (BEGIN + SET LOCAL, the query, COMMIT).</summary>
    public Task<Routed<T>> ReadAsync<T>(
        Guid userId, ReadSpec spec, Func<TodoScaleDbContext, CancellationToken, Task<T>> query, CancellationToken cancellationToken) =>
        ReadAsync(userId, spec, new Query<T>(query, null), cancellationToken);

    /// <summary>
    /// A read written against Npgsql in one round trip: <paramref name="query"/> adds its statements to a
    /// <see cref="TenantBatch"/> (BEGIN, SET LOCAL app.user_id, the statements, COMMIT) and sends it once.
    /// </summary>
    public Task<Routed<T>> ReadInBatchAsync<T>(
        Guid userId, ReadSpec spec, Func<TenantBatch, CancellationToken, Task<T>> query, CancellationToken cancellationToken) =>
        ReadAsync(userId, spec, new Query<T>(null, query), cancellationToken);

    /// <summary>One of the two ways a read is written.</summary>
    private readonly record struct Query<T>(
        Func<TodoScaleDbContext, CancellationToken, Task<T>>? OnContext, Func<TenantBatch, CancellationToken, Task<T>>? InBatch);

    private async Task<Routed<T>> ReadAsync<T>(Guid userId, ReadSpec spec, Query<T> query, CancellationToken cancellationToken)
    {
        var partition = monitor.Schema.PartitionOf(userId);
        var serving = await monitor.ServingAsync(cancellationToken);
        spec = spec with { PageKey = PageKey(spec.PageKey, serving) };
        var session = ClientSession.Of(http.HttpContext);
        var view = await userState.ReadAsync(userId, spec.PageKey, session?.Carried);
        if (view.Known)
        {
            session?.Shown(view.LastWriteLsn);
        }

        if (spec.PageKey is not null)
        {
            if (view.CachedPage is { } cached)
            {
                var started = Stopwatch.GetTimestamp();
                var value = JsonSerializer.Deserialize<T>(cached, json.Value.SerializerOptions)!;
                metrics.CacheHit();
                metrics.RecordQuery(Stopwatch.GetElapsedTime(started), partition, spec.Table, ApiMetrics.Targets.Cache, spec.Operation);
                return new(value, ApiMetrics.Targets.Cache);
            }

            if (view.Known)
            {
                metrics.CacheMiss();
            }
            else
            {
                metrics.CacheUnavailable();
            }
        }

        var (target, reason) = Choose(view);

        // A read is safe to run again: while the primary restarts, it waits for it (PrimaryRestart).
        Task<T> OnPrimaryAsync() => PrimaryRestart.Pipeline.ExecuteAsync(
            token => new ValueTask<T>(RunAsync(primaryContexts, userId, spec, partition, ApiMetrics.Targets.Primary, query, serving.FromLegacy, token)),
            cancellationToken).AsTask();

        metrics.Routed(target, reason);
        T result;
        if (target == ApiMetrics.Targets.Replica)
        {
            try
            {
                result = await RunAsync(replicaContexts, userId, spec, partition, target, query, serving.FromLegacy, cancellationToken);
            }
            catch (Exception e) when (IsReplicaFailure(e) && !cancellationToken.IsCancellationRequested)
            {
                if (e is not PostgresException)
                {
                    monitor.MarkReplicaDown(e);
                }

                metrics.Routed(ApiMetrics.Targets.Primary, "replica_failed");
                target = ApiMetrics.Targets.Primary;
                result = await OnPrimaryAsync();
            }
        }
        else
        {
            result = await OnPrimaryAsync();
        }

        if (spec.PageKey is not null && view.Known)
        {
            userState.StorePage(userId, spec.PageKey, view.LastWriteLsn, JsonSerializer.Serialize(result, json.Value.SerializerOptions));
        }

        return new(result, target);
    }

    /// <summary>The cache key of a first page: none during a migration, and a new generation after one started.</summary>
    private static string? PageKey(string? key, Serving serving) => key is null || !serving.Cacheable
        ? null
        : serving.Generation == 0 ? key : $"g{serving.Generation}:{key}";

    private (string Target, string Reason) Choose(UserView view)
    {
        var replica = monitor.Replica;
        return true switch
        {
            _ when !options.Value.UseReplica => (ApiMetrics.Targets.Primary, "replica_disabled"),
            _ when !replica.Up => (ApiMetrics.Targets.Primary, "replica_down"),
            _ when replica.Lag > options.Value.ReplicaLagLimit => (ApiMetrics.Targets.Primary, "replica_lagging"),
            _ when !view.Known => (ApiMetrics.Targets.Primary, "last_write_unknown"),
            _ when view.LastWriteLsn == 0 => (ApiMetrics.Targets.Replica, "no_recent_write"),
            _ when replica.ReplayLsn >= view.LastWriteLsn => (ApiMetrics.Targets.Replica, "caught_up"),
            _ => (ApiMetrics.Targets.Primary, "replica_behind"),
        };
    }

    private async Task<T> RunAsync<TContext, T>(
        IDbContextFactory<TContext> contexts, Guid userId, ReadSpec spec, int partition, string target,
        Query<T> query, bool fromLegacy, CancellationToken cancellationToken)
        where TContext : TodoScaleDbContext
    {
        await using var db = await contexts.CreateDbContextAsync(cancellationToken);
        try
        {
            var started = Stopwatch.GetTimestamp();
            T result;
            if (query.InBatch is { } inBatch)
            {
                await db.Database.OpenConnectionAsync(cancellationToken);
                await using var batch = new TenantBatch((NpgsqlConnection)db.Database.GetDbConnection(), userId, fromLegacy);
                result = await inBatch(batch, cancellationToken);
            }
            else
            {
                await using var transaction = await db.BeginTenantTransactionAsync(userId, cancellationToken, fromLegacy: fromLegacy);
                result = await query.OnContext!(db, cancellationToken);
                await transaction.CommitAsync(cancellationToken);
            }

            metrics.RecordQuery(Stopwatch.GetElapsedTime(started), partition, spec.Table, target, spec.Operation);
            return result;
        }
        catch (Exception e)
        {
            PrimaryRestart.Forget(db.Database.GetDbConnection(), e);
            throw;
        }
    }

    /// <summary>Failures of the replica itself (connection, shutdown, recovery conflicts), not of the query.</summary>
    private static bool IsReplicaFailure(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState is "40001" or "57P01" or "57P02" or "57P03" or "57014" || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException => true,
        TimeoutException => true,
        InvalidOperationException { InnerException: NpgsqlException } => true,
        _ => e.InnerException is { } inner && IsReplicaFailure(inner),
    };
}
