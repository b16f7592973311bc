using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using Polly;
using static TodoScale.Data.SqlText;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Locking;

namespace TodoScale.Archiver.Archiving;

/// <summary>One partition's share of a pass.</summary>
public sealed record PartitionResult(string Partition, int Index, long RowsMoved, long RootsMoved, int Batches, bool Skipped);

/// <summary>What a pass did.</summary>
public sealed record ArchivePassResult(IReadOnlyList<PartitionResult> Partitions, TimeSpan Elapsed, DateTimeOffset Cutoff)
{
    /// <summary>Partitions analyzed after the pass because a large share of them moved (source and archive month).</summary>
    public IReadOnlyList<string> Analyzed { get; init; } = [];

    /// <summary>
    /// Whether the batches ran without per-row triggers (session_replication_role = replica, with the set-based
    /// orphan check in their place) or, where the archiver's role may not set that, with the triggers and guard.
    /// </summary>
    public bool RowTriggersSkipped { get; init; }

    /// <summary>
    /// The phase of a legacy migration in progress, when the pass did not run because of it: until `legacy
    /// finalize`, `todos` and the new tables are kept equal row for row, and a legacy write to a todo the archiver
    /// had moved would bring it back as a second copy.
    /// </summary>
    public string? HeldByLegacyMigration { get; init; }

    public long RowsMoved => Partitions.Sum(p => p.RowsMoved);

    public long RootsMoved => Partitions.Sum(p => p.RootsMoved);

    public int Batches => Partitions.Sum(p => p.Batches);

    public int SkippedPartitions => Partitions.Count(p => p.Skipped);
}

/// <summary>Progress of a pass, reported after every batch.</summary>
public readonly record struct ArchiveProgress(string Partition, long RowsMoved, int Batches, bool Finished);

/// <summary>
/// Moves finished todos from todos_active to todos_archived. Each active partition is worked by one of
/// <see cref="ArchiveOptions.Parallel"/> workers under a session advisory lock (a second archiver skips a
/// partition that is being worked). A batch is ONE statement: DELETE .. RETURNING feeding INSERT with the columns
/// named on both sides, so at every instant each row is in exactly one table and a crash loses or duplicates
/// nothing. The unit of a move is a top-level todo with its whole subtree, and it moves only when every todo in
/// the subtree is finished and older than the cut-off; a finished subtask under an open parent stays.
/// </summary>
public sealed class TodoArchiver(NpgsqlDataSource dataSource, ArchiveOptions options, TimeProvider clock, ArchiveMetrics? metrics = null)
{
    /// <summary>Advisory-lock class of archive work (with the partition's oid as the object id).</summary>
    public const int AdvisoryLockClass = 0x54534152; // "TSAR"

    /// <summary>A batch that lost a race (a serialization failure, a deadlock, a subtask added meanwhile) runs again, up to 10 times.</summary>
    private readonly ResiliencePipeline _batchRetry = TransientRetry.Create(10, TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(200), clock);

    private const string Columns =
        "id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, depth, created_at, updated_at";

    public async Task<ArchivePassResult> RunPassAsync(IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var cutoff = now - options.OlderThan;
        if (await LegacyMigrationPhaseAsync(cancellationToken) is { } phase)
        {
            return new ArchivePassResult([], TimeSpan.Zero, cutoff) { HeldByLegacyMigration = phase };
        }

        var skipRowTriggers = await MaySkipRowTriggersAsync(cancellationToken);
        var result = await RunOverPartitionsAsync("todos_active", "todos_archived", "todos", now, cutoff, (connection, partition) =>
            ArchiveTreesAsync(connection, partition.Name, partition.Index, cutoff, now, skipRowTriggers, progress, cancellationToken), cancellationToken);
        return result with { RowTriggersSkipped = skipRowTriggers };
    }

    private async Task<string?> LegacyMigrationPhaseAsync(CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT phase FROM legacy_migration WHERE phase <> 'finalized'");
        return await command.ExecuteScalarAsync(cancellationToken) as string;
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

    /// <summary>
    /// A pass: archive months first, then every partition of <paramref name="parent"/> worked by one of
    /// <see cref="ArchiveOptions.Parallel"/> workers, each on its own connection under the partition's advisory
    /// lock (a partition another archiver holds is skipped), with the pass's metrics; then ANALYZE where the
    /// pass moved at least <see cref="ArchiveOptions.AnalyzeAfterRows"/> rows, so the planner sees the new sizes
    /// before autovacuum gets to them.
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
            await Task.WhenAll(Enumerable.Range(0, Math.Min(options.Parallel, Math.Max(1, partitions.Count))).Select(async _ =>
            {
                while (queue.TryDequeue(out var partition))
                {
                    await using var partitionLock = await SessionLock.TryTakeAsync(dataSource, AdvisoryLockClass, unchecked((int)partition.Oid), cancellationToken);
                    results.Add(partitionLock is null
                        ? new PartitionResult(partition.Name, partition.Index, 0, 0, 0, Skipped: true)
                        : await work(partitionLock.Connection, (partition.Name, partition.Index)));
                }
            }));

            var moved = results.OrderBy(r => r.Index).ToList();
            var analyzed = moved.Where(r => r.RowsMoved >= options.AnalyzeAfterRows).Select(r => r.Partition).ToList();
            if (moved.Sum(r => r.RowsMoved) >= options.AnalyzeAfterRows)
            {
                analyzed.Add(ArchiveMonths.PartitionName(archiveParent, now));
            }

            foreach (var partition in analyzed)
            {
                await using var analyze = dataSource.CreateCommand("SELECT todoscale_analyze(@partition::regclass)");
                analyze.Parameters.Add(new NpgsqlParameter<string>("partition", partition));
                await analyze.ExecuteNonQueryAsync(cancellationToken);
            }

            var result = new ArchivePassResult(moved, Stopwatch.GetElapsedTime(started), cutoff) { Analyzed = analyzed };
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

    private async Task<List<(string Name, uint Oid, int Index)>> PartitionsAsync(string parent, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT c.relname, c.oid FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = @parent::regclass ORDER BY c.relname
            """);
        command.Parameters.Add(new NpgsqlParameter<string>("parent", parent));
        var partitions = new List<(string, uint, int)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var name = reader.GetString(0);
            var index = int.TryParse(name.AsSpan(name.LastIndexOf("_p", StringComparison.Ordinal) + 2), out var parsed) ? parsed : partitions.Count;
            partitions.Add((name, reader.GetFieldValue<uint>(1), index));
        }

        return partitions;
    }

    private async Task<PartitionResult> ArchiveTreesAsync(
        NpgsqlConnection connection, string partition, int index, DateTimeOffset cutoff, DateTimeOffset archivedAt, bool skipRowTriggers,
        IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        long rows = 0, roots = 0;
        var batches = 0;
        (DateTimeOffset CompletedAt, Guid Id) after = (DateTimeOffset.MinValue, Guid.Empty);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var candidates = await NextRootsAsync(connection, partition, cutoff, after, cancellationToken);
            if (candidates.Count == 0)
            {
                break;
            }

            var started = Stopwatch.GetTimestamp();
            var (moved, movedRoots) = await MoveBatchAsync(connection, partition, candidates, cutoff, archivedAt, skipRowTriggers, cancellationToken);
            rows += moved;
            roots += movedRoots;
            batches++;
            metrics?.BatchMoved("todos", index, moved, Stopwatch.GetElapsedTime(started));
            progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: false));
            after = (candidates[^1].CompletedAt, candidates[^1].Id);
            if (candidates.Count < options.BatchSize)
            {
                break;
            }

            if (options.PauseBetweenBatches > TimeSpan.Zero)
            {
                await Task.Delay(options.PauseBetweenBatches, clock, cancellationToken);
            }
        }

        progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: true));
        return new PartitionResult(partition, index, rows, roots, batches, Skipped: false);
    }

    /// <summary>The next top-level finished todos older than the cut-off, in (completed_at, id) order after the last batch.</summary>
    private async Task<List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)>> NextRootsAsync(
        NpgsqlConnection connection, string partition, DateTimeOffset cutoff, (DateTimeOffset CompletedAt, Guid Id) after,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT user_id, id, completed_at FROM {Quote(partition)}
             WHERE status IN ('done', 'cancelled') AND completed_at < @cutoff AND parent_todo_id IS NULL
               AND (completed_at, id) > (@after_completed, @after_id)
             ORDER BY completed_at, id
             LIMIT @batch
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("after_completed", NpgsqlDbType.TimestampTz) { TypedValue = after.CompletedAt == DateTimeOffset.MinValue ? DateTimeOffset.UnixEpoch.AddYears(-100) : after.CompletedAt });
        command.Parameters.Add(new NpgsqlParameter<Guid>("after_id", NpgsqlDbType.Uuid) { TypedValue = after.Id });
        command.Parameters.Add(new NpgsqlParameter<int>("batch", NpgsqlDbType.Integer) { TypedValue = options.BatchSize });
        var roots = new List<(Guid, Guid, DateTimeOffset)>(options.BatchSize);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            roots.Add((reader.GetGuid(0), reader.GetGuid(1), reader.GetFieldValue<DateTimeOffset>(2)));
        }

        return roots;
    }

    /// <summary>
    /// The batch: one statement that finds each candidate's subtree, keeps the trees in which every todo qualifies,
    /// deletes exactly those rows (re-checking status, completed_at and parent on the row version it deletes) and
    /// inserts what the delete returned. Retried whole on a serialization failure (a concurrent change reached a
    /// moving tree).
    /// <para>
    /// A subtask committed under a moving todo after the statement's snapshot is what could be lost. With
    /// <paramref name="skipRowTriggers"/> the transaction runs with session_replication_role = replica, so the
    /// parent foreign key's per-row ON DELETE CASCADE trigger (most of a batch's time, and with nothing to do: the
    /// statement deletes every subtask it moves) does not run, and a second statement in the same transaction,
    /// with a new snapshot, looks for any todo left whose parent was just moved: one found rolls the batch back and
    /// it is retried. A writer that inserted such a subtask held a key-share lock on its parent, so the delete
    /// waited for it to commit and the check sees it; a writer that comes after the delete waits on the deleted
    /// row and then fails its own foreign key check. Without it, the triggers run and todos_active_archive_guard
    /// turns such a cascade into a serialization failure.
    /// </para>
    /// </summary>
    private async Task<(long Rows, long Roots)> MoveBatchAsync(
        NpgsqlConnection connection, string partition, List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)> roots,
        DateTimeOffset cutoff, DateTimeOffset archivedAt, bool skipRowTriggers, CancellationToken cancellationToken)
    {
        var table = Quote(partition);
        var sql =
            $"""
            WITH RECURSIVE roots AS (
                SELECT * FROM unnest(@user_ids, @ids) AS r(user_id, id)
            ), tree AS (
                SELECT t.user_id, t.id, t.parent_todo_id, t.id AS root_id,
                       (t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff) AS qualifies
                  FROM {table} t JOIN roots r ON t.user_id = r.user_id AND t.id = r.id
                 WHERE t.parent_todo_id IS NULL
                UNION ALL
                SELECT c.user_id, c.id, c.parent_todo_id, tree.root_id,
                       (c.status IN ('done', 'cancelled') AND c.completed_at < @cutoff)
                  FROM {table} c JOIN tree ON c.user_id = tree.user_id AND c.parent_todo_id = tree.id
            ), movable AS (
                SELECT user_id, id, parent_todo_id, root_id FROM tree
                 WHERE root_id NOT IN (SELECT root_id FROM tree WHERE qualifies IS NOT TRUE)
            ), moved AS (
                DELETE FROM {table} t USING movable m
                 WHERE t.user_id = m.user_id AND t.id = m.id
                   AND t.parent_todo_id IS NOT DISTINCT FROM m.parent_todo_id
                   AND t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff
                RETURNING {string.Join(", ", Columns.Split(", ").Select(c => "t." + c))}
            ), archived AS (
                INSERT INTO todos_archived ({Columns}, archived_at)
                SELECT {Columns}, @archived_at FROM moved
                RETURNING user_id, id, parent_todo_id
            )
            SELECT count(*), count(*) FILTER (WHERE parent_todo_id IS NULL), array_agg(user_id), array_agg(id) FROM archived
            """;
        var orphans =
            $"""
            SELECT c.id FROM unnest(@user_ids, @ids) AS m(user_id, id)
              JOIN {table} c ON c.user_id = m.user_id AND c.parent_todo_id = m.id
             LIMIT 1
            """;
        var settings = skipRowTriggers
            ? "SET LOCAL todoscale.archiving = 'on'; SET LOCAL session_replication_role = replica"
            : "SET LOCAL todoscale.archiving = 'on'";
        return await _batchRetry.ExecuteAsync(async token =>
        {
            await using var transaction = await connection.BeginTransactionAsync(token);
            await using (var guard = new NpgsqlCommand(settings, connection, transaction))
            {
                await guard.ExecuteNonQueryAsync(token);
            }

            await using var command = new NpgsqlCommand(sql, connection, transaction);
            command.Parameters.Add(new NpgsqlParameter<Guid[]>("user_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = roots.Select(r => r.UserId).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = roots.Select(r => r.Id).ToArray() });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("archived_at", NpgsqlDbType.TimestampTz) { TypedValue = archivedAt });
            long rows, movedRoots;
            Guid[] movedUsers = [], movedIds = [];
            await using (var reader = await command.ExecuteReaderAsync(token))
            {
                await reader.ReadAsync(token);
                rows = reader.GetInt64(0);
                movedRoots = reader.GetInt64(1);
                if (rows > 0)
                {
                    movedUsers = reader.GetFieldValue<Guid[]>(2);
                    movedIds = reader.GetFieldValue<Guid[]>(3);
                }
            }

            if (skipRowTriggers && rows > 0)
            {
                await using var check = new NpgsqlCommand(orphans, connection, transaction);
                check.Parameters.Add(new NpgsqlParameter<Guid[]>("user_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = movedUsers });
                check.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = movedIds });
                if (await check.ExecuteScalarAsync(token) is Guid orphan)
                {
                    throw new SubtaskAddedWhileMovingException(orphan);
                }
            }

            await transaction.CommitAsync(token);
            return (rows, movedRoots);
        }, cancellationToken);
    }

    private const string AiColumns = "user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at";

    /// <summary>
    /// Moves AI interactions older than <see cref="ArchiveOptions.AiOlderThan"/> to ai_interactions_archived, per
    /// partition in parallel under the same kind of advisory lock, each batch one DELETE .. RETURNING -> INSERT.
    /// </summary>
    public Task<ArchivePassResult> RunAiPassAsync(IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var cutoff = now - options.AiOlderThan;
        return RunOverPartitionsAsync("ai_interactions", "ai_interactions_archived", "ai_interactions", now, cutoff, (connection, partition) =>
            ArchiveAiPartitionAsync(connection, partition.Name, partition.Index, cutoff, now, progress, cancellationToken), cancellationToken);
    }

    private async Task<PartitionResult> ArchiveAiPartitionAsync(
        NpgsqlConnection connection, string partition, int index, DateTimeOffset cutoff, DateTimeOffset archivedAt,
        IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var table = Quote(partition);
        var sql =
            $"""
            WITH batch AS (
                SELECT user_id, id FROM {table} WHERE created_at < @cutoff ORDER BY created_at LIMIT @batch
            ), moved AS (
                DELETE FROM {table} a USING batch b
                 WHERE a.user_id = b.user_id AND a.id = b.id AND a.created_at < @cutoff
                RETURNING {string.Join(", ", AiColumns.Split(", ").Select(c => "a." + c))}
            ), archived AS (
                INSERT INTO ai_interactions_archived ({AiColumns}, archived_at)
                SELECT {AiColumns}, @archived_at FROM moved
                RETURNING 1
            )
            SELECT count(*) FROM archived
            """;
        long rows = 0;
        var batches = 0;
        while (true)
        {
            var started = Stopwatch.GetTimestamp();
            await using var command = new NpgsqlCommand(sql, connection);
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("archived_at", NpgsqlDbType.TimestampTz) { TypedValue = archivedAt });
            command.Parameters.Add(new NpgsqlParameter<int>("batch", NpgsqlDbType.Integer) { TypedValue = options.BatchSize });
            var moved = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            if (moved == 0)
            {
                break;
            }

            rows += moved;
            batches++;
            metrics?.BatchMoved("ai_interactions", index, moved, Stopwatch.GetElapsedTime(started));
            progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: false));
            if (moved < options.BatchSize)
            {
                break;
            }

            if (options.PauseBetweenBatches > TimeSpan.Zero)
            {
                await Task.Delay(options.PauseBetweenBatches, clock, cancellationToken);
            }
        }

        progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: true));
        return new PartitionResult(partition, index, rows, rows, batches, Skipped: false);
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

/// <summary>A subtask was committed under a todo the batch moved, after the batch's snapshot: the batch rolls back and is retried.</summary>
public sealed class SubtaskAddedWhileMovingException(Guid subtask)
    : TransientConflictException($"todo {subtask} was added under a todo the batch moved, after the batch's snapshot; the batch is retried");
