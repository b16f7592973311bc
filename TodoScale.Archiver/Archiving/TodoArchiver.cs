using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using Polly;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data.Legacy;
using TodoScale.Data.Locking;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Archiving;

/// <summary>
/// Moves finished todos from todos_active to todos_archived. Each active partition is worked by one of
/// <see cref="ArchiveOptions.Parallel"/> workers under a session advisory lock (a second archiver skips a
/// partition that is being worked). A batch is ONE statement: DELETE .. RETURNING feeding INSERT with the columns
/// named on both sides, so at every instant each row is in exactly one table and a crash loses or duplicates
/// nothing. The unit of a move is a top-level todo with its whole subtree, and it moves only when every todo in
/// the subtree is finished and older than the cut-off; a finished subtask under an open parent stays.
/// </summary>
public sealed partial class TodoArchiver(NpgsqlDataSource dataSource, ArchiveOptions options, TimeProvider clock, ArchiveMetrics? metrics = null)
{
    /// <summary>Advisory-lock class of archive work (with the partition's oid as the object id).</summary>
    public const int AdvisoryLockClass = 0x54534152; // "TSAR"

    /// <summary>A batch that lost a race (a serialization failure, a deadlock, a subtask added meanwhile) runs again, up to 10 times.</summary>
    private readonly ResiliencePipeline _batchRetry = TransientRetry.Create(10, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(200), clock);

    private const string Columns = TodoColumns.Todo;

    public async Task<ArchivePassResult> RunPassAsync(IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var cutoff = now - options.OlderThan;
        if (await LegacyMigrationPhaseAsync(cancellationToken) is { } phase)
        {
            return new ArchivePassResult([], TimeSpan.Zero, cutoff) { HeldByLegacyMigration = phase };
        }

        var skipRowTriggers = await MaySkipRowTriggersAsync(cancellationToken);
        bool citus;
        await using (var probe = await dataSource.OpenConnectionAsync(cancellationToken))
        {
            citus = await CitusLayout.IsCitusAsync(probe, cancellationToken);
        }

        var result = await RunOverPartitionsAsync("todos_active", "todos_archived", "todos", now, cutoff, (connection, partition) =>
            ArchiveTreesAsync(connection, partition.Name, partition.Index, cutoff, now, skipRowTriggers, citus, progress, cancellationToken), cancellationToken);
        return result with { RowTriggersSkipped = skipRowTriggers };
    }

    private async Task<string?> LegacyMigrationPhaseAsync(CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await LegacyPhase.InProgressAsync(connection, cancellationToken);
    }

    /// <summary>
    /// Whether the batches skip per-row triggers: where allowed (<see cref="ArchiverDataSource.MaySkipRowTriggersAsync"/>);
    /// otherwise they keep the per-row foreign key trigger and the cascade guard.
    /// </summary>
    private async Task<bool> MaySkipRowTriggersAsync(CancellationToken cancellationToken)
    {
        if (!options.SkipRowTriggers)
        {
            return false;
        }

        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        return await ArchiverDataSource.MaySkipRowTriggersAsync(connection, cancellationToken);
    }

    /// <summary>Whether a table whose statistics counted <paramref name="rowsBefore"/> rows (-1: never analyzed) changed enough by <paramref name="moved"/> rows to ANALYZE.</summary>
    private bool WorthAnalyzing(long moved, long rowsBefore) =>
        moved >= options.AnalyzeAfterRows && (rowsBefore < 0 || moved >= options.AnalyzeAfterShare * rowsBefore);

    /// <summary>The table's rows as its statistics last counted them (pg_class.reltuples), -1 when never analyzed.</summary>
    private async Task<long> EstimatedRowsAsync(string table, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT coalesce((SELECT reltuples::bigint FROM pg_class WHERE oid = to_regclass(@table)), -1)");
        command.Parameters.AddWithValue("table", table);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>ANALYZE of one table (todoscale_analyze, which the archiver's role may run); the time it took, in Stopwatch ticks.</summary>
    private static async Task<long> AnalyzeAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await using var analyze = new NpgsqlCommand("SELECT todoscale_analyze(@table::regclass)", connection);
        analyze.Parameters.Add(new NpgsqlParameter<string>("table", table));
        await analyze.ExecuteNonQueryAsync(cancellationToken);
        return Stopwatch.GetTimestamp() - started;
    }

    /// <summary>
    /// A pass: archive months first, then every partition of <paramref name="parent"/> worked by one of
    /// <see cref="ArchiveOptions.Parallel"/> workers, each on its own connection under the partition's advisory
    /// lock (a partition another archiver holds is skipped), with the pass's metrics; ANALYZE, by the worker that
    /// moved it, of each partition the pass moved at least <see cref="ArchiveOptions.AnalyzeAfterRows"/> rows and
    /// <see cref="ArchiveOptions.AnalyzeAfterShare"/> of its rows from, and then of the archive month by the same
    /// rule, so the planner sees sizes that changed that much before autovacuum gets to them.
    /// </summary>
    private async Task<ArchivePassResult> RunOverPartitionsAsync(
        string parent, string archiveParent, string table, DateTimeOffset now, DateTimeOffset cutoff,
        Func<NpgsqlConnection, (string Name, int Index), Task<PartitionResult>> work, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            // The month of the pass's own time: every row of the pass is archived at `now`, even when the month
            // turns while the pass starts.
            await EnsureArchiveMonthsAsync(now, cancellationToken);
            var partitions = await PartitionsAsync(parent, cancellationToken);
            var queue = new ConcurrentQueue<(string Name, uint Oid, int Index)>(partitions);
            var results = new ConcurrentBag<PartitionResult>();
            var analyzed = new ConcurrentQueue<string>();
            long analyzeTicks = 0;
            var month = ArchiveMonths.PartitionName(archiveParent, now);
            var monthRows = await EstimatedRowsAsync(month, cancellationToken);
            await Task.WhenAll(Enumerable.Range(0, Math.Min(options.Parallel, Math.Max(1, partitions.Count))).Select(async _ =>
            {
                while (queue.TryDequeue(out var partition))
                {
                    await using var partitionLock = await SessionLock.TryTakeAsync(dataSource, AdvisoryLockClass, unchecked((int)partition.Oid), cancellationToken);
                    var rowsBefore = partitionLock is null ? 0 : await EstimatedRowsAsync(partition.Name, cancellationToken);
                    var result = partitionLock is null
                        ? new PartitionResult(partition.Name, partition.Index, 0, 0, 0, Skipped: true)
                        : await work(partitionLock.Connection, (partition.Name, partition.Index));
                    results.Add(result);
                    // Analyzed by the worker that moved it, at once: the workers' ANALYZEs overlap each other's moves
                    // (one after another at the pass's end they were a share of a medium pass of their own).
                    if (partitionLock is not null && WorthAnalyzing(result.RowsMoved, rowsBefore))
                    {
                        Interlocked.Add(ref analyzeTicks, await AnalyzeAsync(partitionLock.Connection, partition.Name, cancellationToken));
                        analyzed.Enqueue(partition.Name);
                    }
                }
            }));

            var moved = results.OrderBy(r => r.Index).ToList();
            if (WorthAnalyzing(moved.Sum(r => r.RowsMoved), monthRows))
            {
                await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
                analyzeTicks += await AnalyzeAsync(connection, month, cancellationToken);
                analyzed.Enqueue(month);
            }

            var result = new ArchivePassResult(moved, Stopwatch.GetElapsedTime(started), cutoff)
            {
                Analyzed = [.. analyzed.Order(StringComparer.Ordinal)],
                Analyzing = Stopwatch.GetElapsedTime(0, analyzeTicks),
            };
            metrics?.PassSucceeded(table, result.Elapsed, clock.GetUtcNow());
            return result;
        }
        catch
        {
            metrics?.PassFailed(table);
            throw;
        }
    }

    /// <summary>Upkeep before a pass: the month archived_at falls in (and <see cref="ArchiveOptions.Premake"/> after it) exists.</summary>
    public Task<int> EnsureArchiveMonthsAsync(DateTimeOffset now, CancellationToken cancellationToken) =>
        ArchiveMonths.EnsureAsync(dataSource, now, options.Premake, cancellationToken);

    /// <summary>The partitions of todos_active as the catalog has them now (a re-split changes them).</summary>
    public Task<List<(string Name, uint Oid, int Index)>> ActivePartitionsAsync(CancellationToken cancellationToken) =>
        PartitionsAsync("todos_active", cancellationToken);

    /// <summary>
    /// The units a pass works: the hash partitions; on Citus, where the table is one distributed table whose shards
    /// are the partitions (<see cref="CitusLayout.Flattened"/>), the table itself, one unit whose candidate queries
    /// Citus runs on every shard at once and whose moves go per user to the user's worker.
    /// </summary>
    private async Task<List<(string Name, uint Oid, int Index)>> PartitionsAsync(string parent, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var partitions = await Catalog.PartitionsAsync(connection, parent, cancellationToken);
        if (partitions.Count == 0)
        {
            return [(parent, await Catalog.ScalarAsync<uint>(connection, null, $"SELECT '{parent}'::regclass::oid", cancellationToken), 0)];
        }

        return [.. partitions.Select((p, i) =>
            (p.Name, p.Oid, int.TryParse(p.Name.AsSpan(p.Name.LastIndexOf("_p", StringComparison.Ordinal) + 2), out var index) ? index : i))];
    }

    /// <summary>Writes the pass to audit_log (actor: who ran it).</summary>
    public Task AuditAsync(string actorKind, string actor, ArchivePassResult? result, Exception? failure, CancellationToken cancellationToken, string target = "todos_active") =>
        AuditLog.WriteAsync(dataSource, actorKind, actor, failure is null ? "archive.pass" : "archive.pass.failed", target, new
        {
            OlderThan = (target == "todos_active" ? options.OlderThan : options.AiOlderThan).ToString(),
            options.BatchSize,
            options.Parallel,
            result?.Cutoff,
            result?.RowsMoved,
            result?.RootsMoved,
            result?.Batches,
            Partitions = result?.Partitions.Count,
            result?.SkippedPartitions,
            AnalyzedPartitions = result?.Analyzed,
            result?.RowTriggersSkipped,
            result?.HeldByLegacyMigration,
            ElapsedMs = result is null ? (long?)null : (long)result.Elapsed.TotalMilliseconds,
            Error = failure?.Message,
        }, cancellationToken);
}
