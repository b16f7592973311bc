using System.Diagnostics;
using System.Runtime.CompilerServices;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Archiver.Archiving;
using TodoScale.Data.Legacy;

namespace TodoScale.Archiver.Legacy;

/// <summary>The row of legacy_migration: where the migration stands.</summary>
public sealed record LegacyState(
    string Phase, DateTimeOffset StartedAt, short? BackfillDepth, Guid? BackfillId, long BackfillRows,
    DateTimeOffset? BackfilledAt, DateTimeOffset? ValidatedAt, DateTimeOffset? SwitchedAt, DateTimeOffset? RolledBackAt,
    DateTimeOffset? FinalizedAt);

/// <summary>A verb refused: asked for at the wrong moment, or on a `todos` it cannot take; nothing was changed.</summary>
public sealed class LegacyOrderException(string message) : Exception(message);

/// <summary>Backfill progress, after every batch.</summary>
public readonly record struct BackfillProgress(long Copied, long Total, short Depth);

public sealed record BackfillResult(
    long Scanned, long Copied, long Rejected, int Batches, TimeSpan Elapsed, long TotalCopied, bool AlreadyDone, bool RowTriggersSkipped = false, int Parallel = 1);

/// <summary>One row the two sides disagree on.</summary>
public sealed record Mismatch(Guid UserId, Guid Id, string Kind, string? Reason);

public sealed record LegacyValidation(
    int Buckets, int BucketsChecked, long LegacyRows, long TodoScaleRows, IReadOnlyList<Mismatch> Mismatches, TimeSpan Elapsed, bool Sample);

/// <summary>What `legacy status` shows.</summary>
public sealed record LegacyStatus(
    bool LegacyTableExists, LegacyState? State, long LegacyRows, long ActiveRows, long ArchivedRows, long Rejects,
    bool ForwardTrigger, bool ReverseTrigger, TimeSpan RetentionWindow);

/// <summary>
/// The online migration from the original design's single table, `todos`, to TodoScale's tables, as the `legacy`
/// verbs run it: start (the dual-write trigger), backfill (keyset batches, parents before children), validate
/// (per user bucket, count and checksum, then row by row). Each verb checks the phase first and refuses out of
/// order with nothing changed, is idempotent, and writes audit_log. DDL runs as the login (it must own `todos`);
/// rows are read and copied as the archiver role, which may see every user's rows.
/// </summary>
public sealed class LegacyMigration(NpgsqlDataSource owner, NpgsqlDataSource archiver, LegacyOptions options, TimeProvider clock)
{
    /// <summary>Held by a running backfill, so a second one refuses instead of racing it ("TSLG").</summary>
    public const long BackfillLockKey = 0x54534C47;

    public const string ForwardTrigger = "todos_todoscale_forward";
    public const string ReverseTrigger = "todos_active_todoscale_reverse";
    public const string BackfillIndex = "todos_todoscale_backfill_ix";

    private const string Columns = LegacySchema.Columns;

    /// <summary><see cref="Columns"/> of `todos` in todos_active's types, named as there.</summary>
    private const string ServedColumns =
        "id, user_id, parent_todo_id, project_id, title::varchar(500) AS title, description::text AS description, status::text AS status, " +
        "priority::smallint AS priority, due_date, completed_at, ai_generated, depth::smallint AS depth, created_at, updated_at";

    /// <summary>
    /// What the API serves from before the switch (see V9): `todos` under TodoScale's table names, the tenant's rows
    /// only (the view names app.user_id as row-level security does), writes through todoscale_legacy_serve. The
    /// columns have TodoScale's types whatever `todos` has (the original design's INTEGER priority and depth,
    /// VARCHAR(20) status), so the API reads both sides alike.
    /// </summary>
    private const string ServingViews =
        $"""
        CREATE SCHEMA IF NOT EXISTS {LegacySchema.ServingSchema};
        CREATE OR REPLACE VIEW {LegacySchema.ServingSchema}.todos_active WITH (security_barrier) AS
            SELECT {ServedColumns} FROM public.todos WHERE user_id = nullif(current_setting('app.user_id', true), '')::uuid;
        CREATE OR REPLACE VIEW {LegacySchema.ServingSchema}.todos_archived AS
            SELECT {ServedColumns}, completed_at AS archived_at FROM public.todos WHERE false;
        CREATE OR REPLACE TRIGGER todos_active_serve INSTEAD OF INSERT OR UPDATE OR DELETE ON {LegacySchema.ServingSchema}.todos_active
            FOR EACH ROW EXECUTE FUNCTION public.todoscale_legacy_serve();
        GRANT USAGE ON SCHEMA {LegacySchema.ServingSchema} TO todoscale_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON {LegacySchema.ServingSchema}.todos_active TO todoscale_app;
        GRANT SELECT ON {LegacySchema.ServingSchema}.todos_archived TO todoscale_app;
        """;

    /// <summary>Where the migration stands, or null before `start`.</summary>
    public async Task<LegacyState?> StateAsync(CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            """
            SELECT phase, started_at, backfill_depth, backfill_id, backfill_rows, backfilled_at, validated_at, switched_at,
                   rolled_back_at, finalized_at
              FROM legacy_migration
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken))
        {
            return null;
        }

        return new LegacyState(
            reader.GetString(0), reader.GetFieldValue<DateTimeOffset>(1),
            reader.IsDBNull(2) ? null : reader.GetInt16(2), reader.IsDBNull(3) ? null : reader.GetGuid(3), reader.GetInt64(4),
            Nullable(reader, 5), Nullable(reader, 6), Nullable(reader, 7), Nullable(reader, 8), Nullable(reader, 9));

        static DateTimeOffset? Nullable(NpgsqlDataReader reader, int ordinal) =>
            reader.IsDBNull(ordinal) ? null : reader.GetFieldValue<DateTimeOffset>(ordinal);
    }

    /// <summary>
    /// `legacy start`: the index the backfill walks (built CONCURRENTLY: `todos` keeps taking writes), the grants
    /// that let the archiver role read `todos` and lock the rows it copies (FOR KEY SHARE needs an UPDATE privilege
    /// on some column: updated_at, which it never writes), and the dual-write trigger, created in one short transaction under
    /// lock_timeout, retried. Idempotent: a second start finds everything in place.
    /// </summary>
    public async Task<(bool Created, TimeSpan LongestLockWait)> StartAsync(string actor, CancellationToken cancellationToken)
    {
        await RequireLegacyTableAsync(cancellationToken);
        await LegacyColumns.RequireAsync(owner, cancellationToken);
        var state = await StateAsync(cancellationToken);
        if (state is not null && state.Phase != LegacyPhase.Started)
        {
            throw new LegacyOrderException($"the migration is past start (phase {state.Phase}); nothing to do");
        }

        if (state is null)
        {
            await using var occupied = owner.CreateCommand("SELECT EXISTS (SELECT FROM todos_active) OR EXISTS (SELECT FROM todos_archived)");
            if ((bool)(await occupied.ExecuteScalarAsync(cancellationToken))!)
            {
                throw new LegacyOrderException(
                    "TodoScale's tables already hold todos: a migration fills empty tables from `todos` (validate would list every other row " +
                    "as a mismatch); migrate into a database whose todos_active and todos_archived are empty");
            }
        }

        await DropInvalidIndexAsync(cancellationToken);
        await using (var index = owner.CreateCommand($"CREATE INDEX CONCURRENTLY IF NOT EXISTS {BackfillIndex} ON todos (depth, id)"))
        {
            index.CommandTimeout = 0;
            await index.ExecuteNonQueryAsync(cancellationToken);
        }

        var created = false;
        var lockWait = await WithLockRetriesAsync(async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand(
                $"""
                GRANT SELECT, UPDATE (updated_at) ON todos TO todoscale_archiver;
                {ServingViews}
                INSERT INTO legacy_migration (phase) VALUES ('{LegacyPhase.Started}') ON CONFLICT DO NOTHING;
                SELECT NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'todos'::regclass AND tgname = '{ForwardTrigger}');
                """, connection, transaction);
            created = (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
            if (created)
            {
                await using var trigger = new NpgsqlCommand(
                    $"CREATE TRIGGER {ForwardTrigger} AFTER INSERT OR UPDATE OR DELETE ON todos FOR EACH ROW EXECUTE FUNCTION todoscale_legacy_forward()",
                    connection, transaction);
                await trigger.ExecuteNonQueryAsync(cancellationToken);
            }
        }, cancellationToken);

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.start", LegacySchema.Table,
            new { TriggerCreated = created, LockWaitMs = (long)lockWait.TotalMilliseconds }, cancellationToken);
        return (created, lockWait);
    }

    /// <summary>
    /// `legacy backfill`: copies `todos` one depth after the other, so every parent is copied before its subtasks;
    /// a depth is cut into id ranges of a batch each, which <see cref="LegacyOptions.Parallel"/> workers copy at once.
    /// Each batch is one transaction that locks the rows it reads (FOR KEY SHARE: a concurrent delete waits for the
    /// batch, then deletes the copy too through the trigger; a row deleted first is not read, so never resurrected),
    /// inserts them with ON CONFLICT DO NOTHING (a row the trigger already wrote is newer: it stays) and adds what it
    /// copied to legacy_migration's count. The resume point (the depth, and the end of its ranges done without a gap)
    /// is saved after each batch, so a kill at any moment resumes there: a range done after the gap is read again and
    /// copies nothing twice. A batch the new tables refuse is redone row by row and the refused rows are recorded in
    /// legacy_rejects. Where the archiver role may, batches run without per-row triggers (see
    /// <see cref="CopyBatchWithoutRowTriggers"/>).
    /// </summary>
    public async Task<BackfillResult> BackfillAsync(string actor, IProgress<BackfillProgress>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await RequireLegacyTableAsync(cancellationToken);
        var state = await StateAsync(cancellationToken) ?? throw new LegacyOrderException("run `legacy start` first: there is no dual-write trigger yet, so a backfill would miss every write made while it runs");
        if (state.Phase != LegacyPhase.Started)
        {
            return new BackfillResult(0, 0, 0, 0, Stopwatch.GetElapsedTime(started), state.BackfillRows, AlreadyDone: true);
        }

        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        await using (var lockCommand = new NpgsqlCommand("SELECT pg_try_advisory_lock(@key)", connection))
        {
            lockCommand.Parameters.Add(new NpgsqlParameter<long>("key", BackfillLockKey));
            if (!(bool)(await lockCommand.ExecuteScalarAsync(cancellationToken))!)
            {
                throw new LegacyOrderException("another backfill is running (advisory lock held); wait for it or stop it");
            }
        }

        var total = await EstimateLegacyRowsAsync(connection, cancellationToken);
        var skipRowTriggers = options.SkipRowTriggers && await ArchiverDataSource.MaySkipRowTriggersAsync(connection, cancellationToken);
        var counts = new BackfillCounts(state.BackfillRows);
        var level = state.BackfillDepth ?? await NextLevelAsync(connection, -1, cancellationToken);
        var after = state.BackfillDepth is null ? null : state.BackfillId;
        while (level is { } current)
        {
            var resume = new ResumePoint(after);
            await Parallel.ForEachAsync(RangesAsync(connection, current, after, cancellationToken),
                new ParallelOptions { MaxDegreeOfParallelism = options.Parallel, CancellationToken = cancellationToken },
                async (range, token) =>
                {
                    await using var worker = await archiver.OpenConnectionAsync(token);
                    var batch = await WithBatchRetriesAsync(() => CopyBatchAsync(worker, range, skipRowTriggers, token), token);
                    var copiedInAll = counts.Add(batch);
                    progress?.Report(new BackfillProgress(copiedInAll, Math.Max(total, copiedInAll), current));
                    if (resume.Done(range) is { } position)
                    {
                        await SavePositionAsync(worker, current, position, token);
                    }

                    if (options.PauseBetweenBatches > TimeSpan.Zero)
                    {
                        await Task.Delay(options.PauseBetweenBatches, clock, token);
                    }
                });

            level = await NextLevelAsync(connection, current, cancellationToken);
            after = null;
            if (level is { } next)
            {
                await SavePositionAsync(connection, next, null, cancellationToken);
            }
        }

        await using (var done = new NpgsqlCommand(
            $"UPDATE legacy_migration SET phase = '{LegacyPhase.Backfilled}', backfilled_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Started}'",
            connection))
        {
            await done.ExecuteNonQueryAsync(cancellationToken);
        }

        var result = new BackfillResult(
            counts.Scanned, counts.Copied, counts.Rejected, counts.Batches, Stopwatch.GetElapsedTime(started), counts.CopiedInAll, AlreadyDone: false, skipRowTriggers, options.Parallel);
        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.backfill", LegacySchema.Table, new
        {
            result.Scanned, result.Copied, result.Rejected, result.Batches, result.TotalCopied, result.RowTriggersSkipped, result.Parallel, ElapsedMs = (long)result.Elapsed.TotalMilliseconds,
        }, cancellationToken);
        return result;
    }

    /// <summary>
    /// The next depth of `todos` after <paramref name="level"/>, or null past the deepest. The column may be smallint,
    /// integer (the original design) or bigint: it is read as bigint, never cast by type test (an INTEGER read
    /// `as short?` was null, and a backfill once took a full table for an empty one).
    /// </summary>
    private static async Task<short?> NextLevelAsync(NpgsqlConnection connection, short level, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT min(depth)::bigint FROM todos WHERE depth > @level", connection);
        command.Parameters.Add(new NpgsqlParameter<short>("level", NpgsqlDbType.Smallint) { TypedValue = level });
        return await command.ExecuteScalarAsync(cancellationToken) switch
        {
            null or DBNull => null,
            long next when next <= short.MaxValue => (short)next,
            var next => throw new LegacyOrderException($"`todos` holds a depth of {next}, beyond any tree TodoScale can hold; fix those rows at the source"),
        };
    }

    /// <summary>
    /// The batches of one depth: (after, upper] ranges of `id` holding <see cref="LegacyOptions.BatchSize"/> rows each
    /// (the last one open-ended), read from the (depth, id) index as the workers ask for them.
    /// </summary>
    private async IAsyncEnumerable<BackfillRange> RangesAsync(
        NpgsqlConnection connection, short level, Guid? after, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        for (long sequence = 0; ; sequence++)
        {
            await using var command = new NpgsqlCommand(
                "SELECT id FROM todos WHERE depth = @level AND (@after::uuid IS NULL OR id > @after) ORDER BY id OFFSET @skip LIMIT 1", connection);
            command.Parameters.Add(new NpgsqlParameter<short>("level", NpgsqlDbType.Smallint) { TypedValue = level });
            command.Parameters.Add(new NpgsqlParameter("after", NpgsqlDbType.Uuid) { Value = (object?)after ?? DBNull.Value });
            command.Parameters.Add(new NpgsqlParameter<int>("skip", NpgsqlDbType.Integer) { TypedValue = options.BatchSize - 1 });
            var upper = await command.ExecuteScalarAsync(cancellationToken) as Guid?;
            yield return new BackfillRange(sequence, level, after, upper);
            if (upper is null)
            {
                yield break;
            }

            after = upper;
        }
    }

    /// <summary>Where a rerun starts: the depth in progress and the end of its ranges done without a gap (null: the depth's start).</summary>
    private static async Task SavePositionAsync(NpgsqlConnection connection, short level, Guid? after, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            UPDATE legacy_migration SET backfill_depth = @level, backfill_id = @after, updated_at = now()
             WHERE phase = '{LegacyPhase.Started}'
               AND (backfill_depth IS NULL OR backfill_depth < @level OR (backfill_depth = @level AND backfill_id < @after))
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<short>("level", NpgsqlDbType.Smallint) { TypedValue = level });
        command.Parameters.Add(new NpgsqlParameter("after", NpgsqlDbType.Uuid) { Value = (object?)after ?? DBNull.Value });
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// A batch that met a lock it would have had to wait for (lock_timeout), or a deadlock, is rolled back and
    /// retried: the backfill gives way, so the legacy application never waits long on it and is never the one a
    /// deadlock is broken on.
    /// </summary>
    private async Task<Batch> WithBatchRetriesAsync(Func<Task<Batch>> batch, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await batch();
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.DeadlockDetected
                                                  or PostgresErrorCodes.SerializationFailure
                                              && attempt < 50)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(1_000, 20 * attempt)), clock, cancellationToken);
            }
        }
    }

    private readonly record struct Batch(long Scanned, long Copied, long Rejected);

    /// <summary>One batch: the rows of `todos` at depth <see cref="Level"/> with After &lt; id &lt;= Upper (null: unbounded).</summary>
    private sealed record BackfillRange(long Sequence, short Level, Guid? After, Guid? Upper);

    /// <summary>The run's totals, added to by the workers as their batches commit.</summary>
    private sealed class BackfillCounts(long copiedBefore)
    {
        private readonly Lock _lock = new();

        public long Scanned { get; private set; }
        public long Copied { get; private set; }
        public long Rejected { get; private set; }
        public int Batches { get; private set; }
        public long CopiedInAll => copiedBefore + Copied;

        public long Add(Batch batch)
        {
            lock (_lock)
            {
                (Scanned, Copied, Rejected, Batches) = (Scanned + batch.Scanned, Copied + batch.Copied, Rejected + batch.Rejected, Batches + 1);
                return CopiedInAll;
            }
        }
    }

    /// <summary>
    /// The ranges of a depth done so far, which end in any order when workers run in parallel: the resume point is
    /// the upper end of the ranges done without a gap before it (a rerun redoes the others, which copies nothing twice).
    /// </summary>
    private sealed class ResumePoint(Guid? after)
    {
        private readonly Lock _lock = new();
        private readonly SortedDictionary<long, Guid?> _done = [];
        private long _next;

        /// <summary>The new resume point, when <paramref name="range"/> closed a gap; null when it did not move (or the depth ended).</summary>
        public Guid? Done(BackfillRange range)
        {
            lock (_lock)
            {
                _done[range.Sequence] = range.Upper;
                var moved = false;
                while (_done.Remove(_next, out var upper))
                {
                    (after, moved) = (upper, true);
                    _next++;
                }

                return moved ? after : null;
            }
        }
    }

    private async Task<Batch> CopyBatchAsync(NpgsqlConnection connection, BackfillRange range, bool skipRowTriggers, CancellationToken cancellationToken)
    {
        try
        {
            var batch = await InTransactionAsync(connection, skipRowTriggers, async transaction =>
            {
                await using var command = new NpgsqlCommand(skipRowTriggers ? CopyBatchWithoutRowTriggers : CopyBatchWithRowTriggers, connection, transaction);
                AddRange(command, range);
                await using var reader = await command.ExecuteReaderAsync(cancellationToken);
                return await reader.ReadAsync(cancellationToken)
                    ? new Batch(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2))
                    : new Batch(0, 0, 0);
            }, cancellationToken);

            // Without row triggers the statement copies nothing when a row fails its checks (Rejected counts them).
            return batch.Rejected > 0 ? await CopyRowByRowAsync(connection, range, cancellationToken) : batch;
        }
        catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.ForeignKeyViolation or PostgresErrorCodes.CheckViolation
                                              or PostgresErrorCodes.NotNullViolation or PostgresErrorCodes.StringDataRightTruncation
                                              or PostgresErrorCodes.UniqueViolation or PostgresErrorCodes.RaiseException)
        {
            return await CopyRowByRowAsync(connection, range, cancellationToken);
        }
    }

    /// <summary>A <see cref="BackfillRange"/>'s rows of `todos` (custom plans: the NULL tests fold away, the bounds use the index).</summary>
    private const string RangeFilter = "depth = @level AND (@after::uuid IS NULL OR id > @after) AND (@upper::uuid IS NULL OR id <= @upper)";

    /// <summary>The batch's rows of `todos`, in id order, locked (FOR KEY SHARE) until the batch commits.</summary>
    private const string BatchRows =
        $"""
        batch AS MATERIALIZED (
            SELECT {Columns} FROM todos
             WHERE {RangeFilter}
             ORDER BY id
               FOR KEY SHARE
        )
        """;

    /// <summary>
    /// Adds the batch's copies to legacy_migration's count in the batch's transaction (so the count stays exact across
    /// kills), and returns (read, copied, refused).
    /// </summary>
    private const string SaveAndReport =
        """
        saved AS (
            UPDATE legacy_migration SET backfill_rows = backfill_rows + (SELECT count(*) FROM copied), updated_at = now()
             WHERE NOT EXISTS (SELECT FROM refused)
        )
        SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM copied), (SELECT count(*) FROM refused)
        """;

    /// <summary>
    /// A batch with TodoScale's row triggers and foreign keys checking every row (the depth computed from the parent,
    /// the parent and project locked): where the archiver role may not skip row triggers.
    /// </summary>
    private const string CopyBatchWithRowTriggers =
        $"""
        WITH {BatchRows}, made_projects AS (
            INSERT INTO projects (user_id, id, name)
            SELECT DISTINCT user_id, project_id, {LegacySchema.ImportedProjectName} FROM batch WHERE project_id IS NOT NULL
            ON CONFLICT DO NOTHING
        ), refused AS (
            SELECT FROM batch WHERE false
        ), copied AS (
            INSERT INTO todos_active ({Columns})
            SELECT {Columns} FROM batch
            ON CONFLICT (user_id, id) DO NOTHING
            RETURNING 1
        ), {SaveAndReport}
        """;

    /// <summary>
    /// A batch under session_replication_role = replica: no per-row trigger (todos_active_before_write, the foreign
    /// keys' checks) fires, and the statement does their work once for the batch. Measured on 2M rows: a batch of
    /// 10,000 subtasks took 1,800 ms with the row triggers (the parent's depth lookup 84 us and the parent key
    /// check 53 us per row) and 490 ms this way. What the triggers guaranteed still holds: every parent exists for
    /// the same user in todos_active (a batch holds one depth, so parents were copied by earlier batches) and is locked FOR KEY SHARE as the foreign key
    /// would lock it, so a concurrent delete waits and then cascades to the copies; the row's depth is its parent's
    /// + 1 (0 for a root), which also rules out cycles; every project exists (made here) and is locked. A batch with
    /// any row that fails these checks copies nothing and is redone with the row triggers, row by row, so the row's
    /// refusal is recorded exactly as the trigger path records it. Check constraints apply either way.
    /// </summary>
    private const string CopyBatchWithoutRowTriggers =
        $"""
        WITH {BatchRows}, parents AS MATERIALIZED (
            SELECT p.user_id, p.id, p.depth FROM todos_active p
             WHERE (p.user_id, p.id) IN (SELECT user_id, parent_todo_id FROM batch WHERE parent_todo_id IS NOT NULL)
               FOR KEY SHARE
        ), refused AS MATERIALIZED (
            SELECT b.id FROM batch b
              LEFT JOIN parents p ON p.user_id = b.user_id AND p.id = b.parent_todo_id
             WHERE b.depth IS DISTINCT FROM CASE WHEN b.parent_todo_id IS NULL THEN 0 ELSE p.depth + 1 END
        ), used_projects AS MATERIALIZED (
            SELECT p.user_id, p.id FROM projects p
             WHERE (p.user_id, p.id) IN (SELECT user_id, project_id FROM batch WHERE project_id IS NOT NULL)
               FOR KEY SHARE
        ), made_projects AS (
            INSERT INTO projects (user_id, id, name)
            SELECT DISTINCT user_id, project_id, {LegacySchema.ImportedProjectName} FROM batch b
             WHERE project_id IS NOT NULL AND NOT EXISTS (SELECT FROM refused)
               AND NOT EXISTS (SELECT FROM used_projects u WHERE u.user_id = b.user_id AND u.id = b.project_id)
            ON CONFLICT DO NOTHING
        ), copied AS (
            INSERT INTO todos_active ({Columns})
            SELECT {Columns} FROM batch WHERE NOT EXISTS (SELECT FROM refused)
            ON CONFLICT (user_id, id) DO NOTHING
            RETURNING 1
        ), {SaveAndReport}
        """;

    /// <summary>A batch the new tables refused as a whole, row by row under savepoints: the good rows copy, the others are recorded.</summary>
    private async Task<Batch> CopyRowByRowAsync(NpgsqlConnection connection, BackfillRange range, CancellationToken cancellationToken) =>
        await InTransactionAsync(connection, skipRowTriggers: false, async transaction =>
        {
            var rows = new List<(Guid UserId, Guid Id)>();
            await using (var select = new NpgsqlCommand(
                $"SELECT user_id, id FROM todos WHERE {RangeFilter} ORDER BY id FOR KEY SHARE", connection, transaction))
            {
                AddRange(select, range);
                await using var reader = await select.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    rows.Add((reader.GetGuid(0), reader.GetGuid(1)));
                }
            }

            long copied = 0, rejected = 0;
            foreach (var row in rows)
            {
                await transaction.SaveAsync("row", cancellationToken);
                try
                {
                    await using var copy = new NpgsqlCommand(
                        $"""
                        WITH source AS (SELECT {Columns} FROM todos WHERE id = @id),
                        made_project AS (
                            INSERT INTO projects (user_id, id, name)
                            SELECT user_id, project_id, {LegacySchema.ImportedProjectName} FROM source WHERE project_id IS NOT NULL
                            ON CONFLICT DO NOTHING)
                        INSERT INTO todos_active ({Columns}) SELECT {Columns} FROM source
                        ON CONFLICT (user_id, id) DO NOTHING
                        """, connection, transaction);
                    copy.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
                    copied += await copy.ExecuteNonQueryAsync(cancellationToken);
                    await using var clear = new NpgsqlCommand("DELETE FROM legacy_rejects WHERE user_id = @user_id AND id = @id", connection, transaction);
                    clear.Parameters.Add(new NpgsqlParameter<Guid>("user_id", row.UserId));
                    clear.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
                    await clear.ExecuteNonQueryAsync(cancellationToken);
                    await transaction.ReleaseAsync("row", cancellationToken);
                }
                catch (PostgresException e) when (e.SqlState is not (PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.QueryCanceled or PostgresErrorCodes.LockNotAvailable))
                {
                    await transaction.RollbackAsync("row", cancellationToken);
                    await using var reject = new NpgsqlCommand(
                        """
                        INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message) VALUES (@user_id, @id, 'backfill', @state, @message)
                        ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
                            message = EXCLUDED.message, at = EXCLUDED.at
                        """, connection, transaction);
                    reject.Parameters.Add(new NpgsqlParameter<Guid>("user_id", row.UserId));
                    reject.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
                    reject.Parameters.Add(new NpgsqlParameter<string>("state", e.SqlState));
                    reject.Parameters.Add(new NpgsqlParameter<string>("message", e.MessageText));
                    await reject.ExecuteNonQueryAsync(cancellationToken);
                    rejected++;
                }
            }

            await using var save = new NpgsqlCommand(
                "UPDATE legacy_migration SET backfill_rows = backfill_rows + @copied, updated_at = now()", connection, transaction);
            save.Parameters.Add(new NpgsqlParameter<long>("copied", copied));
            await save.ExecuteNonQueryAsync(cancellationToken);
            return new Batch(rows.Count, copied, rejected);
        }, cancellationToken);

    private static void AddRange(NpgsqlCommand command, BackfillRange range)
    {
        command.Parameters.Add(new NpgsqlParameter<short>("level", NpgsqlDbType.Smallint) { TypedValue = range.Level });
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

    /// <summary>
    /// `legacy validate`: in one snapshot (REPEATABLE READ, so writes made meanwhile are either on both sides or on
    /// neither), counts and checksums every user bucket of `todos` and of todos_active + todos_archived, then
    /// compares the mismatching buckets row by row. With <paramref name="samplePercent"/> only that share of the
    /// buckets is compared. A full validation without a mismatch moves the phase to validated (the gate of
    /// `switch`); one with a mismatch moves a validated migration back.
    /// </summary>
    public async Task<LegacyValidation> ValidateAsync(string actor, int? samplePercent, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await RequireLegacyTableAsync(cancellationToken);
        var state = await StateAsync(cancellationToken);
        if (state is null || state.Phase == LegacyPhase.Started)
        {
            throw new LegacyOrderException(state is null
                ? "run `legacy start` and `legacy backfill` first: there is nothing to compare yet"
                : "run `legacy backfill` to the end first: before it, every row not yet copied would be a mismatch");
        }

        if (state.Phase == LegacyPhase.Finalized)
        {
            throw new LegacyOrderException("the migration is finalized: `todos` is gone");
        }

        var buckets = options.ValidateBuckets;
        var checkedBuckets = samplePercent is { } percent ? Math.Max(1, buckets * percent / 100) : buckets;
        var bucketFilter = samplePercent is null ? "" : $"WHERE abs(hashtext(user_id::text)) % {buckets} < {checkedBuckets}";
        var row = $"md5(ROW({Columns})::text)";
        var newSide = $"SELECT {Columns} FROM todos_active UNION ALL SELECT {Columns} FROM todos_archived";

        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var legacy = await BucketsAsync(connection, transaction, $"SELECT {Columns} FROM todos", cancellationToken);
        var todoscale = await BucketsAsync(connection, transaction, newSide, cancellationToken);
        var differing = legacy.Keys.Union(todoscale.Keys)
            .Where(b => !legacy.TryGetValue(b, out var l) || !todoscale.TryGetValue(b, out var t) || l != t)
            .ToArray();

        var mismatches = new List<Mismatch>();
        if (differing.Length > 0)
        {
            await using var rows = new NpgsqlCommand(
                $"""
                WITH l AS (
                    SELECT user_id, id, {row} AS h FROM todos WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets)
                ), n AS (
                    SELECT user_id, id, min({row}) AS h, count(*) AS copies FROM ({newSide}) s
                     WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets) GROUP BY user_id, id
                )
                SELECT coalesce(l.user_id, n.user_id), coalesce(l.id, n.id),
                       CASE WHEN n.id IS NULL THEN 'missing in TodoScale'
                            WHEN l.id IS NULL THEN 'only in TodoScale'
                            WHEN n.copies > 1 THEN 'in TodoScale twice'
                            ELSE 'content differs' END,
                       r.sqlstate || ': ' || r.message
                  FROM l FULL JOIN n ON l.id = n.id AND l.user_id = n.user_id
                  LEFT JOIN legacy_rejects r ON r.user_id = coalesce(l.user_id, n.user_id) AND r.id = coalesce(l.id, n.id)
                 WHERE l.h IS DISTINCT FROM n.h OR n.copies > 1
                 ORDER BY 1, 2
                """, connection, transaction);
            rows.Parameters.Add(new NpgsqlParameter<int[]>("buckets", differing));
            rows.CommandTimeout = 0;
            await using var reader = await rows.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                mismatches.Add(new Mismatch(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2), reader.IsDBNull(3) ? null : reader.GetString(3)));
            }
        }

        await transaction.CommitAsync(cancellationToken);
        var result = new LegacyValidation(buckets, checkedBuckets, legacy.Values.Sum(v => v.Count), todoscale.Values.Sum(v => v.Count),
            mismatches, Stopwatch.GetElapsedTime(started), samplePercent is not null);

        if (samplePercent is null)
        {
            var sql = mismatches.Count == 0
                ? $"UPDATE legacy_migration SET phase = '{LegacyPhase.Validated}', validated_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Backfilled}'"
                : $"UPDATE legacy_migration SET phase = '{LegacyPhase.Backfilled}', validated_at = NULL, updated_at = now() WHERE phase = '{LegacyPhase.Validated}'";
            await using var phase = owner.CreateCommand(sql);
            await phase.ExecuteNonQueryAsync(cancellationToken);
        }

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.validate", LegacySchema.Table, new
        {
            Sample = samplePercent, result.BucketsChecked, result.LegacyRows, result.TodoScaleRows, Mismatches = mismatches.Count,
            FirstMismatches = mismatches.Take(20).Select(m => $"{m.Id} {m.Kind}"), ElapsedMs = (long)result.Elapsed.TotalMilliseconds,
        }, cancellationToken);
        return result;

        async Task<Dictionary<int, (long Count, decimal Sum)>> BucketsAsync(NpgsqlConnection c, NpgsqlTransaction t, string source, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                $"""
                SELECT abs(hashtext(user_id::text)) % {buckets} AS bucket, count(*),
                       coalesce(sum(('x' || substr({row}, 1, 16))::bit(64)::bigint), 0)
                  FROM ({source}) s {bucketFilter}
                 GROUP BY 1
                """, c, t);
            command.CommandTimeout = 0;
            var result = new Dictionary<int, (long, decimal)>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                result[reader.GetInt32(0)] = (reader.GetInt64(1), reader.GetDecimal(2));
            }

            return result;
        }
    }

    /// <summary>
    /// `legacy switch`: the API serves from TodoScale's tables (it reads the phase every poll, no restart) and the
    /// reverse trigger on todos_active keeps `todos` current, so a rollback is instant and loses nothing. Only
    /// from validated (or rolled_back), and only while no row of `todos` is refused by the new tables. The trigger
    /// and the phase change in one short transaction under lock_timeout, retried. Both triggers stay on until
    /// finalize: an API instance that has not yet seen the switch writes `todos`, and the forward trigger carries
    /// it over as before.
    /// </summary>
    public async Task<(bool AlreadySwitched, TimeSpan LongestLockWait)> SwitchAsync(string actor, CancellationToken cancellationToken)
    {
        var from = (await StateAsync(cancellationToken))?.Phase;
        if (from == LegacyPhase.Switched)
        {
            return (true, TimeSpan.Zero);
        }

        RequireSwitchable(from);
        var lockWait = await WithLockRetriesAsync(async (connection, transaction) =>
        {
            await using var check = new NpgsqlCommand(
                $"""
                SELECT (SELECT phase FROM legacy_migration FOR UPDATE), (SELECT count(*) FROM legacy_rejects),
                       NOT EXISTS (SELECT FROM pg_trigger WHERE tgrelid = 'todos_active'::regclass AND tgname = '{ReverseTrigger}')
                """, connection, transaction);
            string? phase;
            long rejects;
            bool missing;
            await using (var reader = await check.ExecuteReaderAsync(cancellationToken))
            {
                await reader.ReadAsync(cancellationToken);
                (phase, rejects, missing) = (reader.IsDBNull(0) ? null : reader.GetString(0), reader.GetInt64(1), reader.GetBoolean(2));
            }

            RequireSwitchable(phase);
            if (rejects > 0)
            {
                throw new LegacyOrderException(
                    $"{rejects:N0} row(s) of todos are refused by the new tables (legacy_rejects): fix them in todos, run `legacy validate` again, then switch");
            }

            await using var command = new NpgsqlCommand(
                (missing
                    ? $"CREATE TRIGGER {ReverseTrigger} AFTER INSERT OR UPDATE OR DELETE ON todos_active FOR EACH ROW EXECUTE FUNCTION todoscale_legacy_reverse();"
                    : "")
                + $"UPDATE legacy_migration SET phase = '{LegacyPhase.Switched}', switched_at = now(), updated_at = now()",
                connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.switch", LegacySchema.Table,
            new { From = from, LockWaitMs = (long)lockWait.TotalMilliseconds }, cancellationToken);
        return (false, lockWait);

        static void RequireSwitchable(string? phase)
        {
            switch (phase)
            {
                case LegacyPhase.Validated or LegacyPhase.RolledBack:
                    return;
                case null:
                    throw new LegacyOrderException("run `legacy start`, `legacy backfill` and `legacy validate` first: there is nothing to switch to yet");
                case LegacyPhase.Finalized:
                    throw new LegacyOrderException("the migration is finalized: TodoScale serves, and `todos` is gone");
                case LegacyPhase.Switched:
                    throw new LegacyOrderException("another `legacy switch` has just switched");
                default:
                    throw new LegacyOrderException(
                        $"the new tables are not validated (phase {phase}): run `legacy validate` until it reports 0 mismatches, then switch");
            }
        }
    }

    /// <summary>
    /// `legacy rollback`: the API serves from `todos` again. Instant: `todos` is current (the reverse trigger), so
    /// only the phase changes; both triggers stay, and writes keep reaching both sides whichever one an API
    /// instance serves from until it has seen the change.
    /// </summary>
    public async Task<bool> RollbackAsync(string actor, CancellationToken cancellationToken)
    {
        var phase = (await StateAsync(cancellationToken))?.Phase;
        switch (phase)
        {
            case LegacyPhase.RolledBack:
                return false;
            case LegacyPhase.Finalized:
                throw new LegacyOrderException("the migration is finalized: `todos` is gone, there is nothing to roll back to");
            case not LegacyPhase.Switched:
                throw new LegacyOrderException($"nothing to roll back: the API serves from todos until `legacy switch` (phase {phase ?? "not started"})");
        }

        await using var command = owner.CreateCommand(
            $"UPDATE legacy_migration SET phase = '{LegacyPhase.RolledBack}', rolled_back_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Switched}'");
        if (await command.ExecuteNonQueryAsync(cancellationToken) == 0)
        {
            throw new LegacyOrderException("the phase changed while rolling back; run `legacy status` and try again");
        }

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.rollback", LegacySchema.Table, new { From = phase }, cancellationToken);
        return true;
    }

    /// <summary>
    /// `legacy finalize`: once the retention window since the switch is over (or with <paramref name="force"/>),
    /// drops the reverse trigger and the API's views and sets the phase, in one short transaction under lock_timeout,
    /// retried; then `todos` itself (<see cref="DropLegacyTableAsync"/>). Only from switched: a rolled-back migration
    /// serves from `todos`.
    /// </summary>
    public async Task<(bool AlreadyFinalized, TimeSpan LongestLockWait)> FinalizeAsync(string actor, bool force, CancellationToken cancellationToken)
    {
        var state = await StateAsync(cancellationToken);
        switch (state?.Phase)
        {
            case LegacyPhase.Finalized:
                await DropLegacyTableAsync(cancellationToken); // a finalize stopped between its two steps
                return (true, TimeSpan.Zero);
            case not LegacyPhase.Switched:
                throw new LegacyOrderException(
                    $"finalize comes after `legacy switch` (phase {state?.Phase ?? "not started"}): it drops `todos`, which still serves");
        }

        var windowEnds = state.SwitchedAt!.Value + options.RetentionWindow;
        var now = clock.GetUtcNow();
        if (now < windowEnds && !force)
        {
            throw new LegacyOrderException(
                $"the retention window runs until {windowEnds.UtcDateTime:yyyy-MM-dd HH:mm:ss} UTC ({(windowEnds - now).TotalDays:0.0} days left): " +
                "until then `todos` is the instant rollback; `--force` drops it now");
        }

        var lockWait = await WithLockRetriesAsync(async (connection, transaction) =>
        {
            await using (var phase = new NpgsqlCommand("SELECT phase FROM legacy_migration FOR UPDATE", connection, transaction))
            {
                if (await phase.ExecuteScalarAsync(cancellationToken) is not LegacyPhase.Switched)
                {
                    throw new LegacyOrderException("the phase changed while finalizing (a rollback?); run `legacy status`");
                }
            }

            await using var command = new NpgsqlCommand(
                $"""
                DROP TRIGGER IF EXISTS {ReverseTrigger} ON todos_active;
                DROP SCHEMA IF EXISTS {LegacySchema.ServingSchema} CASCADE;
                UPDATE legacy_migration SET phase = '{LegacyPhase.Finalized}', finalized_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Switched}';
                """, connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);
        await DropLegacyTableAsync(cancellationToken);

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.finalize", LegacySchema.Table,
            new { Forced = force && now < windowEnds, LockWaitMs = (long)lockWait.TotalMilliseconds }, cancellationToken);
        return (false, lockWait);
    }

    /// <summary>
    /// Finalize's second step: `todos` itself (its forward trigger and index go with it), in a transaction of its own.
    /// Removing a large table's files takes a while at commit (1.1 s for 10M rows in the medium benchmark when it
    /// shared the first step's transaction, holding todos_active's lock all along); alone it holds only the lock on
    /// `todos`, which nothing serves from any more.
    /// </summary>
    private async Task DropLegacyTableAsync(CancellationToken cancellationToken) =>
        await WithLockRetriesAsync(async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand("DROP TABLE IF EXISTS todos", connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);

    /// <summary>`legacy status`: the phase and its times, rows on both sides (the planner's estimates: no scan of 100M rows), rejects, triggers.</summary>
    public async Task<LegacyStatus> StatusAsync(CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            $"""
            SELECT to_regclass('todos') IS NOT NULL,
                   coalesce((SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE oid = to_regclass('todos')), 0),
                   (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'todos_active'::regclass),
                   (SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'todos_archived'::regclass),
                   (SELECT count(*) FROM legacy_rejects),
                   EXISTS (SELECT FROM pg_trigger WHERE tgname = '{ForwardTrigger}' AND tgrelid = to_regclass('todos')),
                   EXISTS (SELECT FROM pg_trigger WHERE tgname = '{ReverseTrigger}' AND tgrelid = 'todos_active'::regclass)
            """);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var (exists, legacy, active, archived, rejects, forward, reverse) =
            (reader.GetBoolean(0), reader.GetInt64(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetBoolean(5), reader.GetBoolean(6));
        await reader.DisposeAsync();
        return new LegacyStatus(exists, await StateAsync(cancellationToken), legacy, active, archived, rejects, forward, reverse, options.RetentionWindow);
    }

    private async Task RequireLegacyTableAsync(CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand("SELECT to_regclass('todos') IS NOT NULL");
        if (!(bool)(await command.ExecuteScalarAsync(cancellationToken))!)
        {
            throw new LegacyOrderException("there is no legacy table `todos` in this database: nothing to migrate");
        }
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

    /// <summary>A CREATE INDEX CONCURRENTLY killed half-way leaves an invalid index behind: drop it so the next start builds it again.</summary>
    private async Task DropInvalidIndexAsync(CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            $"SELECT EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('{BackfillIndex}') AND NOT indisvalid)");
        if ((bool)(await command.ExecuteScalarAsync(cancellationToken))!)
        {
            await using var drop = owner.CreateCommand($"DROP INDEX CONCURRENTLY IF EXISTS {BackfillIndex}");
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>A DDL step on a table that serves traffic (<see cref="LockBoundStep"/>): returns the longest attempt.</summary>
    private async Task<TimeSpan> WithLockRetriesAsync(Func<NpgsqlConnection, NpgsqlTransaction, Task> step, CancellationToken cancellationToken) =>
        (await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, step, cancellationToken)).LongestAttempt;
}
