using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Legacy;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Legacy;

/// <summary>
/// The online migration from the original design's single table, `todos`, to TodoScale's tables, as the `legacy`
/// verbs run it: start (the dual-write trigger), backfill (keyset batches, parents before children), validate
/// (per user bucket, count and checksum, then row by row). Each verb checks the phase first and refuses out of
/// order with nothing changed, is idempotent, and writes audit_log. DDL runs as the login (it must own `todos`);
/// rows are read and copied as the archiver role, which may see every user's rows.
/// </summary>
public sealed partial class LegacyMigration(NpgsqlDataSource owner, NpgsqlDataSource archiver, LegacyOptions options, TimeProvider clock)
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
    private static string Taken => TakenTemplate.Replace("{started}", "@started").Replace("{depth}", "r.chain_depth");

    /// <summary>What validate compares, both sides: every column but depth (todos_active derives it from the chain, the legacy column is never read).</summary>
    private const string ComparedColumns = TodoColumns.TodoButDepth;

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
    private static readonly string ServingViews = SqlResource.Read("Legacy/Sql/serving-views.sql",
        ("schema", LegacySchema.ServingSchema), ("served_columns", ServedColumns));

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
        await using (var citus = await owner.OpenConnectionAsync(cancellationToken))
        {
            if (await CitusLayout.IsCitusAsync(citus, cancellationToken))
            {
                throw new LegacyOrderException(
                    "this database is a Citus cluster: the migration from `todos` runs on one PostgreSQL (its dual-write triggers and " +
                    "backfill are built for local tables). Migrate there first; then make that server a Citus coordinator and run " +
                    "`migrate`, which distributes the filled tables (README, \"TodoScale on Citus\")");
            }
        }

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
