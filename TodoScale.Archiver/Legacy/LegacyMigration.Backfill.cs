using System.Diagnostics;
using System.Runtime.CompilerServices;
using Npgsql;
using NpgsqlTypes;
using Polly;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Legacy;
using TodoScale.Data.Locking;

namespace TodoScale.Archiver.Legacy;

/// <summary>`legacy backfill`: `todos` copied in id ranges by parallel workers, parents first, each row by the rules or rejected with a reason.</summary>
public sealed partial class LegacyMigration
{
    /// <summary>
    /// `legacy backfill`: copies `todos` in id order (its primary key), cut into ranges of a batch each, which
    /// <see cref="LegacyOptions.Parallel"/> workers copy at once. The parent chain, never the depth column, decides
    /// the order: a batch walks each row's ancestors up to a root or to a row todos_active already holds and copies
    /// the ancestors it lacks with it, root first (so a row's parent is always there before it), each by the rules of
    /// migration V14; a row the rules reject is recorded in legacy_rejects with its reason. Each batch is one
    /// transaction that locks the rows it copies (FOR KEY SHARE: a concurrent delete waits for the batch, then deletes
    /// the copy too through the trigger; a row deleted first is not read, so never resurrected), inserts them with
    /// ON CONFLICT DO NOTHING (a row the trigger already wrote is newer: it stays) and adds what it copied to
    /// legacy_migration's count. The resume point (the end of the ranges done without a gap) is saved after each
    /// batch, so a kill at any moment resumes there: a range done after the gap is read again and copies nothing
    /// twice. Run again once backfilled, it retries the rows in legacy_rejects (after they were fixed at the source).
    /// </summary>
    public async Task<BackfillResult> BackfillAsync(string actor, IProgress<BackfillProgress>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await RequireLegacyTableAsync(cancellationToken);
        var state = await StateAsync(cancellationToken) ?? throw new LegacyOrderException("run `legacy start` first: there is no dual-write trigger yet, so a backfill would miss every write made while it runs");
        var retry = state.Phase is LegacyPhase.Backfilled or LegacyPhase.Validated;
        if (state.Phase != LegacyPhase.Started && !retry)
        {
            return new BackfillResult(0, 0, 0, 0, Stopwatch.GetElapsedTime(started), state.BackfillRows, AlreadyDone: true);
        }

        await using var backfillLock = await SessionLock.TryTakeAsync(archiver, BackfillLockKey, cancellationToken)
            ?? throw new LegacyOrderException("another backfill is running (advisory lock held); wait for it or stop it");
        var connection = backfillLock.Connection;

        var skipRowTriggers = options.SkipRowTriggers && await ArchiverDataSource.MaySkipRowTriggersAsync(connection, cancellationToken);
        var counts = new BackfillCounts(state.BackfillRows);
        var total = retry ? await CountRejectsAsync(connection, cancellationToken) : await EstimateLegacyRowsAsync(connection, cancellationToken);
        // A position saved by a backfill before V14 (which walked by depth) is not an id position: start over (nothing copies twice).
        var after = state.BackfillDepth is null ? state.BackfillId : null;
        var source = retry ? BatchSource.Rejects : BatchSource.Todos;
        var resume = new ResumePoint(after);
        await Parallel.ForEachAsync(RangesAsync(connection, source, retry ? null : after, cancellationToken),
            new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken },
            async (range, token) =>
            {
                await using var worker = await archiver.OpenConnectionAsync(token);
                var batch = await _batchRetry.ExecuteAsync(attempt => new ValueTask<Batch>(CopyBatchAsync(worker, range, skipRowTriggers, state.StartedAt, attempt)), token);
                var read = counts.Add(batch);
                progress?.Report(new BackfillProgress(read, Math.Max(total, read)));
                if (!retry && resume.Done(range) is { } position)
                {
                    await SavePositionAsync(worker, position, token);
                }

                if (options.PauseBetweenBatches > TimeSpan.Zero)
                {
                    await Task.Delay(options.PauseBetweenBatches, clock, token);
                }
            });

        if (!retry)
        {
            await using var done = new NpgsqlCommand(
                $"UPDATE legacy_migration SET phase = '{LegacyPhase.Backfilled}', backfilled_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Started}'",
                connection);
            await done.ExecuteNonQueryAsync(cancellationToken);
        }

        var result = new BackfillResult(
            counts.Scanned, counts.Copied, counts.Rejected, counts.Batches, Stopwatch.GetElapsedTime(started), counts.CopiedInAll, AlreadyDone: false,
            skipRowTriggers, options.Parallel, RetriedRejects: retry);
        await AuditLog.WriteAsync(owner, "operator", actor, retry ? "legacy.backfill.retry" : "legacy.backfill", LegacySchema.Table, new
        {
            result.Scanned, result.Copied, result.Rejected, result.Batches, result.TotalCopied, result.RowTriggersSkipped, result.Parallel, ElapsedMs = (long)result.Elapsed.TotalMilliseconds,
        }, cancellationToken);
        return result;
    }

    /// <summary>
    /// The batches: (after, upper] ranges of `id` holding <see cref="LegacyOptions.BatchSize"/> rows each (the last
    /// one open-ended), read from the primary key (or legacy_rejects' ids) as the workers ask for them.
    /// </summary>
    private async IAsyncEnumerable<BackfillRange> RangesAsync(
        NpgsqlConnection connection, BatchSource source, Guid? after, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var table = source == BatchSource.Todos ? "todos" : "legacy_rejects";
        for (long sequence = 0; ; sequence++)
        {
            await using var command = new NpgsqlCommand(
                $"SELECT id FROM {table} WHERE (@after::uuid IS NULL OR id > @after) ORDER BY id OFFSET @skip LIMIT 1", connection);
            command.Parameters.Add(new NpgsqlParameter("after", NpgsqlDbType.Uuid) { Value = (object?)after ?? DBNull.Value });
            command.Parameters.Add(new NpgsqlParameter<int>("skip", NpgsqlDbType.Integer) { TypedValue = options.BatchSize - 1 });
            var upper = await command.ExecuteScalarAsync(cancellationToken) as Guid?;
            yield return new BackfillRange(sequence, source, after, upper);
            if (upper is null)
            {
                yield break;
            }

            after = upper;
        }
    }

    /// <summary>Where a rerun starts: the end of the ranges done without a gap.</summary>
    private static async Task SavePositionAsync(NpgsqlConnection connection, Guid after, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            UPDATE legacy_migration SET backfill_depth = NULL, backfill_id = @after, updated_at = now()
             WHERE phase = '{LegacyPhase.Started}' AND (backfill_id IS NULL OR backfill_depth IS NOT NULL OR backfill_id < @after)
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid>("after", after));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<long> CountRejectsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT count(*) FROM legacy_rejects", connection);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>
    /// A batch that met a lock it would have had to wait for (lock_timeout), or a deadlock, or an ancestor deleted
    /// between its walk and its lock, is rolled back and retried: the backfill gives way, so the legacy application
    /// never waits long on it and is never the one a deadlock is broken on.
    /// </summary>
    private readonly ResiliencePipeline _batchRetry = TransientRetry.Create(50, TimeSpan.FromMilliseconds(20), TimeSpan.FromSeconds(1), clock);

    /// <summary>An ancestor the batch meant to copy was deleted between the batch's walk and its lock: the batch copied nothing.</summary>
    private sealed class AncestorVanishedException() : TransientConflictException("an ancestor was deleted while the batch read it");

    /// <summary>What one batch did: rows read, rows copied (the rows read and the ancestors they lacked), rows rejected.</summary>
    private readonly record struct Batch(long Scanned, long Copied, long Rejected);

    /// <summary>The run's totals, added to by the workers as their batches commit.</summary>
    private sealed class BackfillCounts(long copiedBefore)
    {
        private readonly Lock _lock = new();

        public long Scanned { get; private set; }
        public long Copied { get; private set; }
        public long Rejected { get; private set; }
        public int Batches { get; private set; }
        public long CopiedInAll => copiedBefore + Copied;

        /// <summary>Adds a batch; returns the rows read so far.</summary>
        public long Add(Batch batch)
        {
            lock (_lock)
            {
                (Scanned, Copied, Rejected, Batches) = (Scanned + batch.Scanned, Copied + batch.Copied, Rejected + batch.Rejected, Batches + 1);
                return Scanned;
            }
        }
    }

    private async Task<Batch> CopyBatchAsync(
        NpgsqlConnection connection, BackfillRange range, bool skipRowTriggers, DateTimeOffset started, CancellationToken cancellationToken)
    {
        var filter = range.Source == BatchSource.Todos ? RangeFilter : $"id IN (SELECT id FROM legacy_rejects WHERE {RangeFilter})";
        try
        {
            return await InTransactionAsync(connection, skipRowTriggers, transaction =>
                RunBatchAsync(connection, transaction, filter, range.Source == BatchSource.Rejects, command => AddRange(command, range), started, cancellationToken),
                cancellationToken);
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.ForeignKeyViolation or PostgresErrorCodes.CheckViolation
                                              or PostgresErrorCodes.NotNullViolation or PostgresErrorCodes.StringDataRightTruncation
                                              or PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.RaiseException)
        {
            return await CopyRowByRowAsync(connection, filter, range, started, cancellationToken);
        }
    }

    /// <summary>
    /// Runs <see cref="CopyBatch"/> over the rows of `todos` that <paramref name="filter"/> names. A <paramref name="retry"/>
    /// of rejected rows copies over an earlier copy todos_active still holds of them (the version taken before the
    /// write that was rejected), so it locks the rows FOR SHARE: no legacy update can slip in between its read and its write.
    /// </summary>
    private static async Task<Batch> RunBatchAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string filter, bool retry, Action<NpgsqlCommand> parameters, DateTimeOffset started,
        CancellationToken cancellationToken)
    {
        // The batch's rows are locked first, in a statement of their own: the batch statement's snapshot, taken
        // after, sees each of them as locked (a row updated meanwhile in its newer version, a row deleted not at all).
        var rowLock = retry ? "SHARE" : "KEY SHARE";
        await using (var lockRows = new NpgsqlCommand($"SELECT count(*) FROM (SELECT FROM todos WHERE {filter} ORDER BY id FOR {rowLock}) l", connection, transaction))
        {
            parameters(lockRows);
            await lockRows.ExecuteNonQueryAsync(cancellationToken);
        }

        var sql = SqlResource.Fill(CopyBatch,
            [("filter", filter), ("lock", rowLock), ("retry", retry ? "true" : "false"), ("conflict", retry ? CopyOverEarlierCopy : "DO NOTHING")]);
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        parameters(command);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("started", started));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        if (reader.GetBoolean(3))
        {
            throw new AncestorVanishedException();
        }

        return new Batch(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    private const string CopyOverEarlierCopy =
        """
        DO UPDATE SET parent_todo_id = EXCLUDED.parent_todo_id, project_id = EXCLUDED.project_id, title = EXCLUDED.title,
            description = EXCLUDED.description, status = EXCLUDED.status, priority = EXCLUDED.priority, due_date = EXCLUDED.due_date,
            completed_at = EXCLUDED.completed_at, ai_generated = EXCLUDED.ai_generated, depth = EXCLUDED.depth,
            created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at
        """;

    /// <summary>A <see cref="BackfillRange"/>'s ids (custom plans: the NULL tests fold away, the bounds use the primary key).</summary>
    private const string RangeFilter = "(@after::uuid IS NULL OR id > @after) AND (@upper::uuid IS NULL OR id <= @upper)";

    /// <summary>One batch, in one statement: Legacy/Sql/backfill-batch.sql (what it does is written there).</summary>
    private static readonly string CopyBatch = SqlResource.Read("Legacy/Sql/backfill-batch.sql",
        ("columns", Columns), ("taken", Taken), ("imported_project_name", LegacySchema.ImportedProjectName));

    /// <summary>
    /// A batch the new tables refused as a whole (a constraint the rules do not foresee), row by row under savepoints:
    /// the good rows copy, each other one is recorded with what PostgreSQL said (reason `refused`).
    /// </summary>
    private async Task<Batch> CopyRowByRowAsync(NpgsqlConnection connection, string filter, BackfillRange range, DateTimeOffset started, CancellationToken cancellationToken) =>
        await InTransactionAsync(connection, skipRowTriggers: false, async transaction =>
        {
            var rows = new List<(Guid UserId, Guid Id)>();
            await using (var select = new NpgsqlCommand($"SELECT user_id, id FROM todos WHERE {filter} ORDER BY id", connection, transaction))
            {
                AddRange(select, range);
                await using var reader = await select.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    rows.Add((reader.GetGuid(0), reader.GetGuid(1)));
                }
            }

            var total = new Batch(0, 0, 0);
            foreach (var row in rows)
            {
                await transaction.SaveAsync("row", cancellationToken);
                try
                {
                    var one = await RunBatchAsync(connection, transaction, "id = @id", range.Source == BatchSource.Rejects,
                        command => command.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id)), started, cancellationToken);
                    total = new Batch(total.Scanned + one.Scanned, total.Copied + one.Copied, total.Rejected + one.Rejected);
                    await transaction.ReleaseAsync("row", cancellationToken);
                }
                catch (PostgresException e) when (e.SqlState is not (PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.QueryCanceled or PostgresErrorCodes.LockNotAvailable))
                {
                    await transaction.RollbackAsync("row", cancellationToken);
                    await using var reject = new NpgsqlCommand(
                        """
                        INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message, reason) VALUES (@user_id, @id, 'backfill', @state, @message, 'refused')
                        ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
                            message = EXCLUDED.message, reason = EXCLUDED.reason, at = EXCLUDED.at
                        """, connection, transaction);
                    reject.Parameters.Add(new NpgsqlParameter<Guid>("user_id", row.UserId));
                    reject.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
                    reject.Parameters.Add(new NpgsqlParameter<string>("state", e.SqlState));
                    reject.Parameters.Add(new NpgsqlParameter<string>("message", e.MessageText));
                    await reject.ExecuteNonQueryAsync(cancellationToken);
                    total = new Batch(total.Scanned + 1, total.Copied, total.Rejected + 1);
                }
            }

            return total;
        }, cancellationToken);

    private static void AddRange(NpgsqlCommand command, BackfillRange range)
    {
        command.Parameters.Add(new NpgsqlParameter("after", NpgsqlDbType.Uuid) { Value = (object?)range.After ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("upper", NpgsqlDbType.Uuid) { Value = (object?)range.Upper ?? DBNull.Value });
    }

    /// <summary>
    /// A batch's transaction: the sync's marker on (TodoScale's own triggers keep the copied updated_at; a reverse
    /// trigger would not echo), without row triggers where <paramref name="skipRowTriggers"/>, and a lock_timeout shorter than deadlock_timeout (1 s by default), so the backfill
    /// gives up a lock wait before a deadlock check could pick the legacy application's transaction.
    /// </summary>
    private async Task<T> InTransactionAsync<T>(
        NpgsqlConnection connection, bool skipRowTriggers, Func<NpgsqlTransaction, Task<T>> body, CancellationToken cancellationToken)
    {
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var replica = skipRowTriggers ? "; SET LOCAL session_replication_role = replica" : "";
        await using (var marker = new NpgsqlCommand(
            $"SET LOCAL todoscale.legacy_sync = 'on'; SET LOCAL jit = off; SET LOCAL lock_timeout = '{(int)options.BatchLockTimeout.TotalMilliseconds}ms'{replica}", connection, transaction))
        {
            await marker.ExecuteNonQueryAsync(cancellationToken);
        }

        var result = await body(transaction);
        await transaction.CommitAsync(cancellationToken);
        return result;
    }

    private async Task<long> EstimateLegacyRowsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT reltuples::bigint FROM pg_class WHERE oid = 'todos'::regclass", connection);
        var estimate = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
        if (estimate > 0)
        {
            return estimate;
        }

        await using var count = new NpgsqlCommand("SELECT count(*) FROM todos", connection) { CommandTimeout = 0 };
        return (long)(await count.ExecuteScalarAsync(cancellationToken))!;
    }
}
