using System.Text.RegularExpressions;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Api.Telemetry;
using TodoScale.Data;
using TodoScale.Data.Legacy;
using TodoScale.Data.Partitioning;

namespace TodoScale.Api.Reads;

/// <summary>What the API knows about the replica, read every <see cref="ReadOptions.ReplicaPollInterval"/>.</summary>
/// <param name="Up">The replica answers and is a hot standby (a promoted replica gets no reads).</param>
/// <param name="ReplayLsn">Everything up to here is visible on the replica; it only moves forward.</param>
/// <param name="Lag">0 when the replica has replayed what the primary had written; otherwise the time since the
/// replica last replayed a transaction (so a paused or stuck replica's lag grows).</param>
public sealed record ReplicaState(bool Up, ulong ReplayLsn, TimeSpan Lag, ulong BytesBehind, DateTimeOffset CheckedAt, string? Error)
{
    public static readonly ReplicaState Unknown = new(false, 0, TimeSpan.MaxValue, 0, DateTimeOffset.MinValue, "not checked yet");
}

/// <summary>Facts the API reads from the catalog rather than from settings, so a re-split needs no restart.</summary>
/// <param name="Layout">The (modulus, remainder) of every partition of todos_active: during a re-split, two moduli side by side.</param>
/// <param name="ShardMinValues">On Citus, where todos_active is one distributed table, its shards' lowest hashes in
/// ascending order (its partitions are the shards, and a shard split changes them); empty on one PostgreSQL.</param>
public sealed record SchemaFacts(IReadOnlySet<(int Modulus, int Remainder)> Layout, int? MaxDepth, IReadOnlyList<int> ShardMinValues)
{
    public static readonly SchemaFacts Default = new(Enumerable.Range(0, 16).Select(r => (16, r)).ToHashSet(), null, []);

    /// <summary>The number of partitions (on Citus, shards) once a re-split in progress is done.</summary>
    public int ActiveModulus => ShardMinValues.Count > 0 ? ShardMinValues.Count : Layout.Count == 0 ? 16 : Layout.Max(b => b.Modulus);

    /// <summary>
    /// The partition holding the user's todos now (the old one until a re-split swaps it); on Citus the shard's place
    /// in hash order, as `partitions status` and the archiver's gauges number them.
    /// </summary>
    public int PartitionOf(Guid userId) =>
        ShardMinValues.Count > 0 ? PartitionHash.ShardIndex(userId, ShardMinValues) : PartitionHash.PartitionIndex(userId, Layout);
}

/// <summary>
/// Which tables the API serves todos from, read from legacy_migration on every poll (so `legacy switch` and
/// `legacy rollback` take effect without a restart, within a poll interval).
/// </summary>
/// <param name="LegacyPhase">The migration's phase; null when there is no migration.</param>
/// <param name="Generation">Changes when a migration starts: cached pages from before it are not served after it.</param>
public sealed record Serving(string? LegacyPhase, long Generation)
{
    public static readonly Serving TodoScale = new(null, 0);

    /// <summary>
    /// Before `legacy switch` and after `legacy rollback`: from the legacy table `todos`, through the views in
    /// <see cref="LegacySchema.ServingSchema"/>.
    /// </summary>
    public bool FromLegacy => Data.Legacy.LegacyPhase.ServesFromLegacy(LegacyPhase);

    /// <summary>
    /// Pages are cached only outside a migration: during one, the legacy application's writes reach the tables
    /// through the triggers, and no cached page would learn of them.
    /// </summary>
    public bool Cacheable => LegacyPhase is null or Data.Legacy.LegacyPhase.Finalized;

    public override string ToString() => FromLegacy ? LegacySchema.Table : "todoscale";
}

/// <summary>
/// Polls the replica's replay position and lag (and, less often, the partition modulus and depth limit from the
/// primary's catalog). Reads consult the latest snapshot instead of asking the replica on every request.
/// </summary>
public sealed partial class DatabaseMonitor(
    NpgsqlDataSource primary,
    [FromKeyedServices(ConnectionNames.TodosReplica)] NpgsqlDataSource replica,
    IOptions<ReadOptions> options,
    TimeProvider clock,
    ApiMetrics metrics,
    ILogger<DatabaseMonitor> logger) : BackgroundService
{
    private static readonly TimeSpan SchemaRefresh = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromSeconds(2);

    private volatile ReplicaState _replica = ReplicaState.Unknown;
    private volatile SchemaFacts _schema = SchemaFacts.Default;
    private volatile Serving? _serving;
    private DateTimeOffset _schemaReadAt = DateTimeOffset.MinValue;

    public ReplicaState Replica => _replica;

    public SchemaFacts Schema => _schema;

    /// <summary>Where todos are served from; before the first poll has answered, asks the primary itself.</summary>
    public async ValueTask<Serving> ServingAsync(CancellationToken cancellationToken)
    {
        if (_serving is { } serving)
        {
            return serving;
        }

        await using var connection = await primary.OpenConnectionAsync(cancellationToken);
        return _serving = await ReadServingAsync(connection, cancellationToken);
    }

    /// <summary>A read on the replica failed at the connection: no more reads there until the next poll says otherwise.</summary>
    public void MarkReplicaDown(Exception error)
    {
        _replica = _replica with { Up = false, Error = error.Message, CheckedAt = clock.GetUtcNow() };
        LogReplicaReadFailed(logger, error.Message);
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        metrics.ObserveReplica(() => _replica);
        using var timer = new PeriodicTimer(options.Value.ReplicaPollInterval, clock);
        do
        {
            await PollAsync(stoppingToken);
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>One poll; public so tests and startup can force a fresh reading.</summary>
    public async Task PollAsync(CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(ProbeTimeout);
        ulong? primaryLsn = null;
        try
        {
            await using var connection = await primary.OpenConnectionAsync(timeout.Token);
            if (clock.GetUtcNow() - _schemaReadAt > SchemaRefresh)
            {
                _schema = await ReadSchemaFactsAsync(connection, timeout.Token);
                _schemaReadAt = clock.GetUtcNow();
            }

            _serving = await ReadServingAsync(connection, timeout.Token);
            await using var command = new NpgsqlCommand("SELECT pg_current_wal_lsn()", connection);
            primaryLsn = (ulong)(NpgsqlLogSequenceNumber)(await command.ExecuteScalarAsync(timeout.Token))!;
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            // Writes will fail on their own; the replica's lag is then measured against the last known position.
        }

        var previous = _replica;
        try
        {
            await using var connection = await replica.OpenConnectionAsync(timeout.Token);
            await using var command = new NpgsqlCommand(
                """
                SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn(), clock_timestamp() - pg_last_xact_replay_timestamp()
                """, connection);
            await using var reader = await command.ExecuteReaderAsync(timeout.Token);
            await reader.ReadAsync(timeout.Token);
            var inRecovery = reader.GetBoolean(0);
            var replay = reader.IsDBNull(1) ? 0UL : (ulong)reader.GetFieldValue<NpgsqlLogSequenceNumber>(1);
            var sinceReplay = reader.IsDBNull(2) ? TimeSpan.MaxValue : reader.GetFieldValue<TimeSpan>(2);
            var target = primaryLsn ?? _lastPrimaryLsn;
            var caughtUp = replay >= target;
            var state = new ReplicaState(
                Up: inRecovery,
                ReplayLsn: replay,
                Lag: caughtUp ? TimeSpan.Zero : (sinceReplay < TimeSpan.Zero ? TimeSpan.Zero : sinceReplay),
                BytesBehind: caughtUp ? 0 : target - replay,
                CheckedAt: clock.GetUtcNow(),
                Error: inRecovery ? null : "the replica is not in recovery (promoted?): it gets no reads");
            _replica = state;
            if (!previous.Up && state.Up)
            {
                LogReplicaUp(logger);
            }
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or InvalidOperationException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
        {
            _replica = previous with { Up = false, Error = e.Message, CheckedAt = clock.GetUtcNow() };
            if (previous.Up)
            {
                LogReplicaDown(logger, e.Message);
            }
        }

        if (primaryLsn is { } lsn)
        {
            _lastPrimaryLsn = lsn;
        }
    }

    private ulong _lastPrimaryLsn;

    [GeneratedRegex(@"modulus (\d+), remainder (\d+)")]
    private static partial Regex BoundPattern();

    [GeneratedRegex(@"depth <= (\d+)")]
    private static partial Regex MaxDepthPattern();

    private static async Task<SchemaFacts> ReadSchemaFactsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT (SELECT string_agg(pg_get_expr(c.relpartbound, c.oid), ' ')
                      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'todos_active'::regclass),
                   (SELECT pg_get_constraintdef(oid) FROM pg_constraint
                     WHERE conrelid = 'todos_active'::regclass AND conname = 'todos_active_depth_check'),
                   to_regclass('pg_catalog.pg_dist_shard') IS NOT NULL AND (SELECT relkind FROM pg_class WHERE oid = 'todos_active'::regclass) = 'r'
            """, connection);
        string bounds, check;
        bool distributedWhole;
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            await reader.ReadAsync(cancellationToken);
            bounds = reader.IsDBNull(0) ? "" : reader.GetString(0);
            check = reader.IsDBNull(1) ? "" : reader.GetString(1);
            distributedWhole = reader.GetBoolean(2);
        }

        int[] shards = [];
        if (distributedWhole)
        {
            await using var shardQuery = new NpgsqlCommand(
                "SELECT coalesce(array_agg(shardminvalue::int ORDER BY shardminvalue::int), '{}') FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass",
                connection);
            shards = (int[])(await shardQuery.ExecuteScalarAsync(cancellationToken))!;
        }

        var layout = BoundPattern().Matches(bounds).Select(m => (int.Parse(m.Groups[1].Value), int.Parse(m.Groups[2].Value))).ToHashSet();
        var depth = MaxDepthPattern().Match(check) is { Success: true } m ? int.Parse(m.Groups[1].Value) : (int?)null;
        return new SchemaFacts(layout.Count == 0 ? SchemaFacts.Default.Layout : layout, depth, shards);
    }

    private async Task<Serving> ReadServingAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT phase, (extract(epoch FROM started_at) * 1000)::bigint FROM legacy_migration", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var serving = await reader.ReadAsync(cancellationToken) ? new Serving(reader.GetString(0), reader.GetInt64(1)) : Serving.TodoScale;
        if (_serving is { } previous && previous.FromLegacy != serving.FromLegacy)
        {
            LogServingChanged(logger, serving.ToString(), serving.LegacyPhase ?? "none");
        }

        return serving;
    }

    [LoggerMessage(LogLevel.Information, "Todos are now served from {Source} (legacy migration phase {Phase}).")]
    private static partial void LogServingChanged(ILogger logger, string source, string phase);

    [LoggerMessage(LogLevel.Warning, "The replica is down or unreachable; reads go to the primary: {Reason}")]
    private static partial void LogReplicaDown(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Warning, "A read on the replica failed; reads go to the primary until it answers again: {Reason}")]
    private static partial void LogReplicaReadFailed(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Information, "The replica answers again; reads may go there.")]
    private static partial void LogReplicaUp(ILogger logger);
}
