using System.Diagnostics;
using System.Runtime.CompilerServices;
using Npgsql;
using NpgsqlTypes;
using Polly;
using TodoScale.Archiver.Database;
using TodoScale.Data.Legacy;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Locking;

namespace TodoScale.Archiver.Legacy;

/// <summary>The row of legacy_migration: where the migration stands.</summary>
public sealed record LegacyState(
    string Phase, DateTimeOffset StartedAt, short? BackfillDepth, Guid? BackfillId, long BackfillRows,
    DateTimeOffset? BackfilledAt, DateTimeOffset? ValidatedAt, DateTimeOffset? SwitchedAt, DateTimeOffset? RolledBackAt,
    DateTimeOffset? FinalizedAt);

/// <summary>A verb refused: asked for at the wrong moment, or on a `todos` it cannot take; nothing was changed.</summary>
public sealed class LegacyOrderException(string message) : Exception(message);

/// <summary>Backfill progress, after every batch: rows of `todos` read so far, of about <see cref="Total"/>.</summary>
public readonly record struct BackfillProgress(long Read, long Total);

/// <summary>
/// A backfill's run: every row read is taken (copied now, or earlier: by the trigger, a previous run, or as an
/// ancestor of a row read before it) or rejected, so Scanned - Rejected rows are taken; Copied counts the rows this
/// run inserted (the ancestors it copied ahead included). <see cref="RetriedRejects"/>: a run once backfilled, which
/// read only the rows in legacy_rejects again.
/// </summary>
public sealed record BackfillResult(
    long Scanned, long Copied, long Rejected, int Batches, TimeSpan Elapsed, long TotalCopied, bool AlreadyDone, bool RowTriggersSkipped = false,
    int Parallel = 1, bool RetriedRejects = false);

/// <summary>One row the two sides disagree on; <see cref="Reason"/> (legacy_rejects.reason) and <see cref="Message"/> when the row is rejected.</summary>
public sealed record Mismatch(Guid UserId, Guid Id, string Kind, string? Reason, string? Message = null)
{
    public const string OnlyInTodoScale = "only in TodoScale";
}

/// <summary>
/// What `legacy validate` found. Every row of `todos` checked is taken (equal on both sides as the rules make it),
/// rejected (a mismatch with a reason) or another mismatch: <see cref="LegacyRows"/> = <see cref="Taken"/> +
/// <see cref="Rejected"/> + <see cref="Unexplained"/>.
/// </summary>
public sealed record LegacyValidation(
    int Buckets, int BucketsChecked, long LegacyRows, long TodoScaleRows, IReadOnlyList<Mismatch> Mismatches, TimeSpan Elapsed, bool Sample)
{
    public long Rejected => Mismatches.Count(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is not null);

    public long Unexplained => Mismatches.Count(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is null);

    public long Taken => LegacyRows - Rejected - Unexplained;

    /// <summary>The rejected rows by reason, most first.</summary>
    public IReadOnlyList<(string Reason, int Rows)> RejectedByReason =>
        Mismatches.Where(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is not null)
            .GroupBy(m => m.Reason!).Select(g => (g.Key, g.Count())).OrderByDescending(g => g.Item2).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
}

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
    /// <summary>
    /// Built by `legacy start` on `todos` (parent_todo_id): a deleted row's subtree (the trigger records it as
    /// orphaned) and the API's subtree delete are found through it instead of by scanning the table.
    /// </summary>
    public const string ParentIndex = "todos_todoscale_parent_ix";

    private const string Columns = LegacySchema.Columns;

    /// <summary>
    /// <see cref="Columns"/> of a row of `todos` (alias r) as TodoScale takes it, by the rules of migration V14 (one
    /// SQL function per rule, shared with the dual-write trigger), in todos_active's types; {started} is the
    /// migration's start (legacy_migration.started_at), {depth} the depth expression.
    /// </summary>
    private const string TakenTemplate =
        "r.id, r.user_id, r.parent_todo_id, r.project_id, r.title::varchar(500) AS title, r.description::text AS description, " +
        "todoscale_legacy_status(r.status, r.completed_at) AS status, todoscale_legacy_priority(r.priority) AS priority, r.due_date, " +
        "todoscale_legacy_completed_at(r.status, r.completed_at, r.created_at, r.updated_at, {started}) AS completed_at, " +
        "coalesce(r.ai_generated, false) AS ai_generated, {depth} AS depth, " +
        "todoscale_legacy_created_at(r.completed_at, r.created_at, r.updated_at, {started}) AS created_at, " +
        "todoscale_legacy_updated_at(r.completed_at, r.created_at, r.updated_at, {started}) AS updated_at";

    /// <summary>The backfill's copy: the depth its walk derived from the chain.</summary>
    private static readonly string Taken = TakenTemplate.Replace("{started}", "@started").Replace("{depth}", "r.chain_depth");

    /// <summary>What validate compares, both sides: every column but depth (todos_active derives it from the chain, the legacy column is never read).</summary>
    private const string ComparedColumns =
        "id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, created_at, updated_at";

    /// <summary>
    /// The API's view of `todos` before the switch: rows by the rules, the depth column as stored (within smallint;
    /// `todoscale_legacy_serve` keeps it current for the API's own writes); rows the rules reject on their own
    /// values (blank title, unknown status) are not served, as TodoScale will not hold them.
    /// </summary>
    private static readonly string ServedColumns = TakenTemplate
        .Replace("{started}", "(SELECT started_at FROM public.legacy_migration)")
        .Replace("{depth}", "least(greatest(coalesce(r.depth, 0), 0), 32767)::smallint");

    /// <summary>
    /// What the API serves from before the switch (see V9): `todos` under TodoScale's table names, the tenant's rows
    /// only (the view names app.user_id as row-level security does), writes through todoscale_legacy_serve. The
    /// columns have TodoScale's types whatever `todos` has (the original design's INTEGER priority and depth,
    /// VARCHAR(20) status), so the API reads both sides alike.
    /// </summary>
    private static readonly string ServingViews =
        $"""
        CREATE SCHEMA IF NOT EXISTS {LegacySchema.ServingSchema};
        CREATE OR REPLACE VIEW {LegacySchema.ServingSchema}.todos_active WITH (security_barrier) AS
            SELECT {ServedColumns} FROM public.todos r
             WHERE r.user_id = nullif(current_setting('app.user_id', true), '')::uuid AND todoscale_legacy_refusal(r.title, r.status) IS NULL;
        CREATE OR REPLACE VIEW {LegacySchema.ServingSchema}.todos_archived AS
            SELECT {ServedColumns}, r.completed_at AS archived_at FROM public.todos r WHERE false;
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
    /// `legacy start`: <see cref="ParentIndex"/> (built CONCURRENTLY: `todos` keeps taking writes), the grants
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
        await using (var index = owner.CreateCommand($"CREATE INDEX CONCURRENTLY IF NOT EXISTS {ParentIndex} ON todos (parent_todo_id) WHERE parent_todo_id IS NOT NULL"))
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

    /// <summary>What a backfill walks: all of `todos`, or (run again once backfilled) the rows in legacy_rejects.</summary>
    private enum BatchSource { Todos, Rejects }

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

    /// <summary>One batch: the rows of its source with After &lt; id &lt;= Upper (null: unbounded).</summary>
    private sealed record BackfillRange(long Sequence, BatchSource Source, Guid? After, Guid? Upper);

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

    /// <summary>
    /// The ranges done so far, which end in any order when workers run in parallel: the resume point is the upper
    /// end of the ranges done without a gap before it (a rerun redoes the others, which copies nothing twice).
    /// </summary>
    private sealed class ResumePoint(Guid? after)
    {
        private readonly Lock _lock = new();
        private readonly SortedDictionary<long, Guid?> _done = [];
        private long _next;

        /// <summary>The new resume point, when <paramref name="range"/> closed a gap; null when it did not move (or the walk ended).</summary>
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

        var sql = CopyBatch.Replace("{filter}", filter, StringComparison.Ordinal)
            .Replace("{lock}", rowLock, StringComparison.Ordinal)
            .Replace("{retry}", retry ? "true" : "false", StringComparison.Ordinal)
            .Replace("{conflict}", retry ? CopyOverEarlierCopy : "DO NOTHING", StringComparison.Ordinal);
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

    /// <summary>
    /// One batch, in one statement (its rows locked just before, FOR KEY SHARE; a retry: FOR SHARE). `batch`: its
    /// rows of `todos`. `walk`: each row's chain up `todos` (by the primary key) to a root, or to the first row the
    /// rules reject on its own values, a parent missing or another user's, a cycle, or Schema:MaxDepth ancestors.
    /// `plan`: from where each walk ended, the row's depth (the chain's: the depth column is never read) or the
    /// reason it is rejected, by the same rules as todoscale_legacy_take_chain (V14), the trigger's. `nodes`: the rows
    /// to copy, the batch's taken rows and the ancestors they need that todos_active does not hold yet, each with
    /// its depth (a row todos_active holds already is not written again: the trigger's copy is newer; a retry writes
    /// its own rows over their earlier copies). `ancestors`: those ancestors, locked FOR KEY SHARE too; `parents`:
    /// the rows of todos_active the copies hang from, locked FOR KEY SHARE as their foreign key would lock them (for
    /// the batches that run without row triggers). If one of either was deleted since the walk read it, the batch
    /// copies nothing and reports it (`vanished`), to be retried. Then the projects, the copy (parents first), the
    /// rejects (recorded, or cleared for the rows taken now) and the count, and the batch reports (read, copied,
    /// rejected, vanished). Under session_replication_role = replica no row trigger runs (measured on 2M rows before:
    /// 1,800 ms per 10,000 subtasks with todos_active_before_write and the foreign keys' checks, 490 ms without):
    /// what they guarantee holds by construction, and check constraints apply either way.
    /// </summary>
    private static readonly string CopyBatch =
        $"""
        WITH RECURSIVE batch AS MATERIALIZED (
            SELECT {Columns} FROM todos WHERE {"{filter}"}
        ), walk AS (
            SELECT t.id AS origin, t.id, t.user_id, t.parent_todo_id, 0 AS hops, ARRAY[t.id] AS path,
                   todoscale_legacy_refusal(t.title, t.status) AS refusal, t.title::text AS title, t.status::text AS status
              FROM batch t
            UNION ALL
            SELECT w.origin, p.id, p.user_id, p.parent_todo_id, w.hops + 1, w.path || p.id,
                   todoscale_legacy_refusal(p.title, p.status), p.title::text, p.status::text
              FROM walk w JOIN todos p ON p.id = w.parent_todo_id
             WHERE w.refusal IS NULL AND w.hops < todoscale_max_depth() AND p.user_id = w.user_id AND p.id <> ALL (w.path)
        ), ends AS MATERIALIZED (
            SELECT DISTINCT ON (origin) * FROM walk ORDER BY origin, hops DESC
        ), outcomes AS MATERIALIZED (
            SELECT e.*,
                   CASE WHEN e.refusal IS NOT NULL THEN CASE WHEN e.hops = 0 THEN e.refusal ELSE 'ancestor_refused' END
                        WHEN e.parent_todo_id IS NULL THEN NULL
                        WHEN e.parent_todo_id = e.origin THEN 'cycle'
                        WHEN e.parent_todo_id = ANY (e.path) THEN 'ancestor_cycle'
                        WHEN p.id IS NULL THEN CASE WHEN e.hops = 0 THEN 'parent_missing' ELSE 'ancestor_parent_missing' END
                        WHEN p.user_id <> e.user_id THEN CASE WHEN e.hops = 0 THEN 'parent_other_user' ELSE 'ancestor_parent_other_user' END
                        ELSE 'too_deep' END AS outcome
              FROM ends e
              LEFT JOIN todos p ON p.id = e.parent_todo_id
        ), plan AS MATERIALIZED (
            SELECT origin, user_id, hops AS depth, path,
                   CASE WHEN outcome LIKE 'ancestor%' THEN 'ancestor_rejected' ELSE outcome END AS reason,
                   CASE WHEN outcome IN ('parent_missing', 'parent_other_user', 'ancestor_parent_missing', 'ancestor_parent_other_user')
                        THEN '23503' ELSE '23514' END AS sqlstate,
                   CASE outcome
                        WHEN 'ancestor_refused' THEN format('ancestor %s is rejected: %s', id, todoscale_legacy_refusal_message(refusal, title, status))
                        WHEN 'too_deep' THEN format('todo %s has more than %s ancestors (Schema:MaxDepth)', origin, todoscale_max_depth())
                        WHEN 'cycle' THEN format('todo %s is its own ancestor (its parent chain is a cycle)', origin)
                        WHEN 'ancestor_cycle' THEN format('ancestor %s is rejected: its parent chain is a cycle', parent_todo_id)
                        WHEN 'parent_missing' THEN format('parent todo %s does not exist', parent_todo_id)
                        WHEN 'ancestor_parent_missing' THEN format('ancestor %s is rejected: its parent %s does not exist', id, parent_todo_id)
                        WHEN 'parent_other_user' THEN format('parent todo %s belongs to another user', parent_todo_id)
                        WHEN 'ancestor_parent_other_user' THEN format('ancestor %s is rejected: its parent %s belongs to another user', id, parent_todo_id)
                        ELSE todoscale_legacy_refusal_message(refusal, title, status) END AS message
              FROM outcomes
        ), nodes AS MATERIALIZED (
            -- From each taken row's path (itself, then its ancestors up to the root), not from a join of plan and walk:
            -- planned as a nested loop over the two CTEs, that join cost more than the rest of the batch.
            SELECT * FROM (
                SELECT DISTINCT ON (n.id) n.id, p.user_id, p.path[n.ord + 1] AS parent_todo_id, n.ord = 1 AS read,
                       (p.depth - n.ord + 1)::smallint AS depth
                  FROM plan p, unnest(p.path) WITH ORDINALITY AS n(id, ord)
                 WHERE p.reason IS NULL
                 ORDER BY n.id, n.ord
            ) n
            -- one probe per row (a scalar subquery, evaluated only here, not an anti-join planned as a scan of todos_active)
            WHERE {"{retry}"} AND n.read OR (SELECT true FROM todos_active a WHERE a.user_id = n.user_id AND a.id = n.id LIMIT 1) IS NULL
        -- Probes by key, one per row (LATERAL): never a join the planner could turn into a scan of a whole table
        -- (a hash semi join over todos_active's partitions made a batch's time grow with every row copied).
        ), ancestors AS MATERIALIZED (
            SELECT t.*, n.depth AS chain_depth FROM (SELECT id, depth FROM nodes WHERE NOT read) n
             CROSS JOIN LATERAL (SELECT {Columns} FROM todos WHERE id = n.id FOR {"{lock}"}) t
        ), parents AS MATERIALIZED (
            SELECT a.id FROM (SELECT DISTINCT user_id, parent_todo_id FROM nodes WHERE parent_todo_id NOT IN (SELECT id FROM nodes)) n
             CROSS JOIN LATERAL (SELECT a.id FROM todos_active a WHERE a.user_id = n.user_id AND a.id = n.parent_todo_id FOR KEY SHARE) a
        ), vanished AS MATERIALIZED (
            SELECT FROM (SELECT id FROM nodes WHERE NOT read EXCEPT SELECT id FROM ancestors) v
            UNION ALL
            SELECT FROM (SELECT parent_todo_id FROM nodes WHERE parent_todo_id NOT IN (SELECT id FROM nodes) EXCEPT SELECT id FROM parents) v
            LIMIT 1
        ), taken AS MATERIALIZED (
            -- No join of two CTEs (estimated at a row each, planned as nested loops, they cost minutes at 10,000
            -- rows): the batch's own rows by key again (locked before this statement), the ancestors as locked.
            SELECT t.*, n.depth AS chain_depth FROM (SELECT id, depth FROM nodes WHERE read) n
             CROSS JOIN LATERAL (SELECT {Columns} FROM todos WHERE id = n.id) t
             WHERE NOT EXISTS (SELECT FROM vanished)
            UNION ALL
            SELECT * FROM ancestors WHERE NOT EXISTS (SELECT FROM vanished)
        ), used_projects AS MATERIALIZED (
            SELECT p.user_id, p.id FROM (SELECT DISTINCT user_id, project_id FROM taken WHERE project_id IS NOT NULL) u
             CROSS JOIN LATERAL (SELECT p.user_id, p.id FROM projects p WHERE p.user_id = u.user_id AND p.id = u.project_id FOR KEY SHARE) p
        ), made_projects AS (
            INSERT INTO projects (user_id, id, name)
            SELECT DISTINCT user_id, project_id, {LegacySchema.ImportedProjectName} FROM taken r
             WHERE project_id IS NOT NULL AND (user_id, project_id) NOT IN (SELECT user_id, id FROM used_projects) -- a hashed subplan
            ON CONFLICT DO NOTHING
        ), copied AS (
            INSERT INTO todos_active ({Columns})
            SELECT {Taken} FROM taken r ORDER BY r.chain_depth
            ON CONFLICT (user_id, id) {"{conflict}"}
            RETURNING 1
        ), rejected AS (
            INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message, reason)
            SELECT user_id, origin, 'backfill', sqlstate, message, reason FROM plan
             WHERE reason IS NOT NULL AND NOT EXISTS (SELECT FROM vanished)
            ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
                message = EXCLUDED.message, reason = EXCLUDED.reason, at = EXCLUDED.at
        ), cleared AS (
            DELETE FROM legacy_rejects j USING plan p
             WHERE p.reason IS NULL AND j.user_id = p.user_id AND j.id = p.origin AND NOT EXISTS (SELECT FROM vanished)
        ), saved AS (
            UPDATE legacy_migration SET backfill_rows = backfill_rows + (SELECT count(*) FROM copied), updated_at = now()
        )
        SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM copied),
               (SELECT count(*) FROM plan WHERE reason IS NOT NULL), EXISTS (SELECT FROM vanished)
        """;

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
        var row = $"md5(ROW({ComparedColumns})::text)";
        var legacySide = $"SELECT {TakenTemplate.Replace("{started}", "@started").Replace("{depth}", "0")} FROM todos r";
        var newSide = $"SELECT {ComparedColumns} FROM todos_active UNION ALL SELECT {ComparedColumns} FROM todos_archived";

        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var legacy = await BucketsAsync(connection, transaction, legacySide, cancellationToken);
        var todoscale = await BucketsAsync(connection, transaction, newSide, cancellationToken);
        // A row in legacy_rejects is a mismatch even where TodoScale holds an equal copy (taken before a later write
        // broke its chain: the legacy row is what switch would serve): its bucket is compared row by row too.
        var rejected = await RejectBucketsAsync(connection, transaction, cancellationToken);
        var differing = legacy.Keys.Union(todoscale.Keys)
            .Where(b => !legacy.TryGetValue(b, out var l) || !todoscale.TryGetValue(b, out var t) || l != t)
            .Union(rejected)
            .ToArray();

        var mismatches = new List<Mismatch>();
        if (differing.Length > 0)
        {
            await using var rows = new NpgsqlCommand(
                $"""
                WITH l AS (
                    SELECT user_id, id, {row} AS h FROM ({legacySide}) s WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets)
                ), n AS (
                    SELECT user_id, id, min({row}) AS h, count(*) AS copies FROM ({newSide}) s
                     WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets) GROUP BY user_id, id
                )
                SELECT coalesce(l.user_id, n.user_id), coalesce(l.id, n.id),
                       CASE WHEN n.id IS NULL THEN 'missing in TodoScale'
                            WHEN l.id IS NULL THEN '{Mismatch.OnlyInTodoScale}'
                            WHEN n.copies > 1 THEN 'in TodoScale twice'
                            WHEN l.h = n.h THEN 'equal in TodoScale, rejected since'
                            ELSE 'content differs' END,
                       r.reason, r.message
                  FROM l FULL JOIN n ON l.id = n.id AND l.user_id = n.user_id
                  LEFT JOIN legacy_rejects r ON r.user_id = coalesce(l.user_id, n.user_id) AND r.id = coalesce(l.id, n.id)
                 WHERE l.h IS DISTINCT FROM n.h OR n.copies > 1 OR (r.id IS NOT NULL AND l.id IS NOT NULL)
                 ORDER BY 1, 2
                """, connection, transaction);
            rows.Parameters.Add(new NpgsqlParameter<int[]>("buckets", differing));
            rows.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("started", state.StartedAt));
            rows.CommandTimeout = 0;
            await using var reader = await rows.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                mismatches.Add(new Mismatch(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4)));
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

        async Task<List<int>> RejectBucketsAsync(NpgsqlConnection c, NpgsqlTransaction t, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                $"SELECT DISTINCT bucket FROM (SELECT abs(hashtext(user_id::text)) % {buckets} AS bucket, user_id FROM legacy_rejects) r {bucketFilter}", c, t);
            var result = new List<int>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                result.Add(reader.GetInt32(0));
            }

            return result;
        }

        async Task<Dictionary<int, (long Count, decimal Sum)>> BucketsAsync(NpgsqlConnection c, NpgsqlTransaction t, string source, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                $"""
                SELECT abs(hashtext(user_id::text)) % {buckets} AS bucket, count(*),
                       coalesce(sum(('x' || substr({row}, 1, 16))::bit(64)::bigint), 0)
                  FROM ({source}) s {bucketFilter}
                 GROUP BY 1
                """, c, t);
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("started", state.StartedAt));
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
            $"SELECT EXISTS (SELECT FROM pg_index WHERE indexrelid = to_regclass('{ParentIndex}') AND NOT indisvalid)");
        if ((bool)(await command.ExecuteScalarAsync(cancellationToken))!)
        {
            await using var drop = owner.CreateCommand($"DROP INDEX CONCURRENTLY IF EXISTS {ParentIndex}");
            await drop.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>A DDL step on a table that serves traffic (<see cref="LockBoundStep"/>): returns the longest attempt.</summary>
    private async Task<TimeSpan> WithLockRetriesAsync(Func<NpgsqlConnection, NpgsqlTransaction, Task> step, CancellationToken cancellationToken) =>
        (await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, step, cancellationToken)).LongestAttempt;
}
