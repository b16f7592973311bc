using System.Diagnostics;
using Npgsql;
using TodoScale.Archiver.Legacy;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Legacy;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Legacy;

/// <summary>
/// The `legacy` verbs against a real PostgreSQL holding the original design's `todos` table, run as an operator runs
/// them (the CLI as a process), while a legacy writer keeps inserting, updating, completing and deleting in `todos`.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class LegacyMigrationTests(PostgresServer server, ITestOutputHelper log)
{
    [Fact]
    public async Task Start_then_a_backfill_killed_10_times_and_resumed_under_a_live_writer_validates_with_every_id_accounted_for()
    {
        var db = await LegacyDatabaseAsync("legacy_flow", users: 2_000, rootsPerUser: 12);
        await using var connection = await Sql.OpenAsync(db);
        // Two rows the rules reject: a status that is none of TodoScale's four, a subtask whose parent does not exist.
        var (badUser, bad) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        var orphan = Guid.CreateVersion7();
        await Sql.ExecuteAsync(connection,
            $"""
            INSERT INTO todos (id, user_id, title, status) VALUES ('{bad}', '{badUser}', 'an unknown status', 'parked');
            INSERT INTO todos (id, user_id, parent_todo_id, title, depth) VALUES ('{orphan}', '{badUser}', '{Guid.CreateVersion7()}', 'orphan', 1);
            """);

        var start = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(start.ExitCode == 0, start.Output);
        Assert.Contains("dual-write trigger todos_todoscale_forward on todos created", start.Output);
        var again = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(again.ExitCode == 0 && again.Output.Contains("already started", StringComparison.Ordinal), again.Output);

        using var stop = new CancellationTokenSource();
        var writer = new LegacyWriter(db, badUser);
        var writing = writer.RunAsync(stop.Token);
        var (kills, positions, last) = await LegacyData.BackfillKilledAsync(db, kills: 10, log, writer);
        log.WriteLine($"backfill killed {kills} times, at positions {string.Join(", ", positions)}; the writer made {writer.Changes} changes so far");
        Assert.Contains("batches (3 at once)", last); // kills land while three batches are in flight, ending out of order
        Assert.DoesNotContain("per-row triggers on", last);
        Assert.True(positions.Count >= 5, $"the kills did not come between batches: positions {string.Join(", ", positions)}");
        Assert.Equal("backfilled", await Sql.ScalarAsync<string>(connection, "SELECT phase FROM legacy_migration"));
        // Run again once backfilled, the backfill retries the rejected rows (still rejected: nothing was fixed).
        var rerun = await OperatorCli.RunAsync(["legacy", "backfill"], db);
        Assert.True(rerun.ExitCode == 0 && rerun.Output.Contains("retried the rejected rows: read 2 rows: 0 taken, 2 rejected", StringComparison.Ordinal), rerun.Output);

        // The two rejected rows are mismatches, with their reasons; fixing them in `todos` (the legacy application's
        // own write) carries them over.
        var failing = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(failing.ExitCode == 1, failing.Output);
        Assert.Contains($"todo {bad}: missing in TodoScale (rejected, unknown_status: status 'parked' is none of todo, in_progress, done, cancelled)", failing.Output);
        Assert.Contains($"todo {orphan}: missing in TodoScale (rejected, parent_missing: parent todo ", failing.Output);
        Assert.Contains("2 rejected (parent_missing 1, unknown_status 1), 0 other;", failing.Output);
        Assert.Contains("2 mismatch(es)", failing.Output);
        await Sql.ExecuteAsync(connection, $"UPDATE todos SET status = 'done', completed_at = now() WHERE id = '{bad}'; DELETE FROM todos WHERE id = '{orphan}'");

        // With the writer still writing: validate compares one snapshot of both sides.
        var sample = await OperatorCli.RunAsync(["legacy", "validate", "--sample", "10"], db);
        Assert.True(sample.ExitCode == 0, sample.Output);
        Assert.Contains("102 of 1024 user buckets (sample)", sample.Output);
        var live = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(live.ExitCode == 0, live.Output);

        // The writer goes on until it has made enough changes to have inserted and deleted (seen, whatever this
        // machine's speed); that it wrote while the backfill ran is checked by BackfillKilledAsync.
        await Progress.UntilAsync(() => writing.IsCompleted || (writer.Changes >= 300 && writer.Inserted.Count > 0 && writer.Deleted.Count > 0),
            () => $"the writer made {writer.Changes} changes ({writer.Inserted.Count} inserted, {writer.Deleted.Count} deleted)");
        await stop.CancelAsync();
        await writing;
        var final = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(final.ExitCode == 0, final.Output);
        Assert.Contains("0 mismatch(es)", final.Output);
        log.WriteLine($"writer: {writer.Changes} changes ({writer.Inserted.Count} inserted, {writer.Deleted.Count} deleted); {failing.Output.Trim()}; {final.Output.Trim()}");

        // Every id accounted for: the same ids and the same content on both sides, nothing in TodoScale twice.
        Assert.Equal(await Sql.ScalarAsync<string>(connection, LegacyData.LegacyChecksum), await Sql.ScalarAsync<string>(connection, LegacyData.TodoScaleChecksum));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM legacy_rejects"));
        Assert.True(writer.Deleted.Count > 0 && writer.Inserted.Count > 0);
        // The batches ran without row triggers (the test server's superuser may): the trees they built still hold
        // what the foreign key and the depth trigger guarantee.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, LegacyData.BrokenTrees));
        var deletedStillThere = await Sql.ScalarAsync<long>(connection,
            $"SELECT count(*) FROM todos_active WHERE id = ANY('{{{string.Join(",", writer.Deleted)}}}'::uuid[])");
        Assert.Equal(0L, deletedStillThere);
        Assert.Equal("validated", await Sql.ScalarAsync<string>(connection, "SELECT phase FROM legacy_migration"));

        var status = await OperatorCli.RunAsync(["legacy", "status"], db);
        Assert.True(status.ExitCode == 0, status.Output);
        Assert.Contains("legacy status: validated", status.Output);
        Assert.True(await Sql.ScalarAsync<long>(connection,
            "SELECT count(DISTINCT action) FROM audit_log WHERE action IN ('legacy.start', 'legacy.backfill', 'legacy.validate')") == 3);

        // Until the migration ends, the archiver leaves the todos where they are (both sides stay equal row for row).
        var archive = await OperatorCli.RunAsync(["archive", "--once", "--older-than", "0d"], db);
        Assert.True(archive.ExitCode == 0, archive.Output);
        Assert.Contains("no todos moved: a legacy migration is in progress (phase validated)", archive.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_archived"));
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_delete_and_an_update_in_flight_while_the_backfill_reads_their_rows_are_neither_undone_nor_lost(bool skipRowTriggers)
    {
        var db = await LegacyDatabaseAsync($"legacy_race_{skipRowTriggers}", users: 50, rootsPerUser: 4);
        var start = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(start.ExitCode == 0, start.Output);
        await using var connection = await Sql.OpenAsync(db);
        var deleted = await Sql.ScalarAsync<Guid>(connection, "SELECT id FROM todos WHERE depth = 0 ORDER BY id LIMIT 1");
        var updated = await Sql.ScalarAsync<Guid>(connection, "SELECT id FROM todos WHERE depth = 0 ORDER BY id OFFSET 1 LIMIT 1");

        // The legacy application, mid-transaction: one root (and its subtree) deleted, another renamed. The backfill's
        // snapshot still sees both as they were.
        await using var legacy = await Sql.OpenAsync(db);
        await using var transaction = await legacy.BeginTransactionAsync();
        await Sql.ExecuteAsync(legacy,
            $"""
            WITH RECURSIVE subtree AS (
                SELECT id FROM todos WHERE id = '{deleted}'
                UNION ALL SELECT t.id FROM todos t JOIN subtree s ON t.parent_todo_id = s.id)
            DELETE FROM todos WHERE id IN (SELECT id FROM subtree);
            UPDATE todos SET title = 'renamed while the backfill ran', updated_at = now() WHERE id = '{updated}';
            """, transaction);

        await using var owner = Archiver.Database.ArchiverDataSource.Create(db, role: null);
        const string app = "legacy-race";
        await using var archiverRole = Archiver.Database.ArchiverDataSource.Create(db + $";Application Name={app}", "todoscale_archiver");
        var migration = new LegacyMigration(owner, archiverRole, new LegacyOptions { BatchSize = 10_000, SkipRowTriggers = skipRowTriggers }, TimeProvider.System);
        var backfill = migration.BackfillAsync("test", null, CancellationToken.None);
        // The backfill's batch meets the legacy transaction's locks and gives way (lock_timeout, retry) until it ends:
        // observed, not slept on, as one of its sessions waiting on a lock the legacy transaction holds.
        var waited = await Progress.UntilAsync<long>(connection,
            $"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock' AND {legacy.ProcessID} = ANY(pg_blocking_pids(pid))",
            n => n > 0, () => backfill.IsCompleted, "the backfill waiting on the legacy transaction's locks");
        Assert.True(waited, backfill.IsFaulted
            ? $"the backfill failed instead of waiting: {backfill.Exception!.GetBaseException().Message}"
            : "the backfill copied rows a legacy transaction was deleting, without waiting for it");
        Assert.False(backfill.IsCompleted, "the backfill ended while the legacy transaction still held its rows");
        await transaction.CommitAsync();
        var result = await backfill;

        Assert.True(result.Copied > 0);
        Assert.Equal(skipRowTriggers, result.RowTriggersSkipped);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, LegacyData.BrokenTrees));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM todos_active WHERE id = '{deleted}'"));
        Assert.Equal("renamed while the backfill ran", await Sql.ScalarAsync<string>(connection, $"SELECT title FROM todos_active WHERE id = '{updated}'"));
        var validate = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(validate.ExitCode == 0, validate.Output);
        Assert.Contains("0 mismatch(es)", validate.Output);
    }

    [Fact]
    public async Task Verbs_out_of_order_are_refused_with_nothing_changed()
    {
        var plain = await server.FreshMigratedDatabaseAsync("legacy_none");
        var noTable = await OperatorCli.RunAsync(["legacy", "start"], plain);
        Assert.True(noTable.ExitCode == 1, noTable.Output);
        Assert.Contains("there is no legacy table `todos`", noTable.Output);
        await Sql.ExecuteAsync(plain, $"{LegacyTable.CreateTable}; INSERT INTO todos_active (id, user_id, title) VALUES (gen_random_uuid(), gen_random_uuid(), 'already here')");
        var occupied = await OperatorCli.RunAsync(["legacy", "start"], plain);
        Assert.True(occupied.ExitCode == 1, occupied.Output);
        Assert.Contains("TodoScale's tables already hold todos", occupied.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(plain, "SELECT count(*) FROM legacy_migration"));

        var db = await LegacyDatabaseAsync("legacy_order", users: 20, rootsPerUser: 3);
        foreach (var (verb, says) in new[]
                 {
                     (new[] { "legacy", "backfill" }, "run `legacy start` first"),
                     (new[] { "legacy", "validate" }, "run `legacy start` and `legacy backfill` first"),
                 })
        {
            var refused = await OperatorCli.RunAsync(verb, db);
            Assert.True(refused.ExitCode == 1, refused.Output);
            Assert.Contains(says, refused.Output);
        }

        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM legacy_migration"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'todos'::regclass AND NOT tgisinternal"));

        var start = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(start.ExitCode == 0, start.Output);
        var early = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(early.ExitCode == 1, early.Output);
        Assert.Contains("run `legacy backfill` to the end first", early.Output);
        Assert.Equal("started", await Sql.ScalarAsync<string>(db, "SELECT phase FROM legacy_migration"));

        var badSample = await OperatorCli.RunAsync(["legacy", "validate", "--sample", "0"], db);
        Assert.True(badSample.ExitCode == 2, badSample.Output);
        var badBatch = await OperatorCli.RunAsync(["legacy", "backfill", "--batch-size", "0"], db);
        Assert.True(badBatch.ExitCode == 2 && badBatch.Output.Contains("BatchSize", StringComparison.Ordinal), badBatch.Output);
        var badParallel = await OperatorCli.RunAsync(["legacy", "backfill", "--parallel", "65"], db);
        Assert.True(badParallel.ExitCode == 2 && badParallel.Output.Contains("Parallel", StringComparison.Ordinal), badParallel.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT backfill_rows FROM legacy_migration"));

        // Switch before validate, rollback before a switch, finalize before a switch: refused, nothing changed.
        foreach (var (verb, says) in new[]
                 {
                     (new[] { "legacy", "switch" }, "the new tables are not validated (phase started)"),
                     (new[] { "legacy", "rollback" }, "nothing to roll back"),
                     (new[] { "legacy", "finalize", "--force" }, "finalize comes after `legacy switch` (phase started)"),
                 })
        {
            var refused = await OperatorCli.RunAsync(verb, db);
            Assert.True(refused.ExitCode == 1, refused.Output);
            Assert.Contains(says, refused.Output);
        }

        Assert.Equal("started", await Sql.ScalarAsync<string>(db, "SELECT phase FROM legacy_migration"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_trigger WHERE tgname = '{LegacyMigration.ReverseTrigger}'"));

        // Finalize inside the retention window: refused, `todos` and both triggers stay; after the window it runs.
        Assert.Equal(0, (await OperatorCli.RunAsync(["legacy", "backfill"], db)).ExitCode);
        Assert.Equal(0, (await OperatorCli.RunAsync(["legacy", "validate"], db)).ExitCode);
        var switched = await OperatorCli.RunAsync(["legacy", "switch"], db);
        Assert.True(switched.ExitCode == 0, switched.Output);
        var inside = await OperatorCli.RunAsync(["legacy", "finalize"], db);
        Assert.True(inside.ExitCode == 1, inside.Output);
        Assert.Contains("the retention window runs until", inside.Output);
        Assert.Contains("days left", inside.Output);
        Assert.Contains("`--force` drops it now", inside.Output);
        Assert.Equal("switched", await Sql.ScalarAsync<string>(db, "SELECT phase FROM legacy_migration"));
        Assert.True(await Sql.ScalarAsync<bool>(db, "SELECT to_regclass('todos') IS NOT NULL"));
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db,
            $"SELECT count(*) FROM pg_trigger WHERE tgname IN ('{LegacyMigration.ForwardTrigger}', '{LegacyMigration.ReverseTrigger}') AND tgparentid = 0"));
        var after = await OperatorCli.RunAsync(["legacy", "finalize"], db, ("Legacy__RetentionWindow", "00:00:00"));
        Assert.True(after.ExitCode == 0, after.Output);
        Assert.Equal("finalized", await Sql.ScalarAsync<string>(db, "SELECT phase FROM legacy_migration"));
        Assert.False(await Sql.ScalarAsync<bool>(db, "SELECT to_regclass('todos') IS NOT NULL OR to_regnamespace('todoscale_legacy') IS NOT NULL"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_trigger WHERE tgname = '{LegacyMigration.ReverseTrigger}'"));
        var late = await OperatorCli.RunAsync(["legacy", "switch"], db);
        Assert.True(late.ExitCode == 1 && late.Output.Contains("the migration is finalized", StringComparison.Ordinal), late.Output);

        // A finalize stopped between its two steps (phase finalized, `todos` not dropped yet): the rerun drops it.
        await Sql.ExecuteAsync(db, LegacyTable.CreateTable);
        var rerun = await OperatorCli.RunAsync(["legacy", "finalize"], db);
        Assert.True(rerun.ExitCode == 0 && rerun.Output.Contains("already finalized", StringComparison.Ordinal), rerun.Output);
        Assert.False(await Sql.ScalarAsync<bool>(db, "SELECT to_regclass('todos') IS NOT NULL"));
    }

    [Fact]
    public async Task Start_refuses_a_column_it_cannot_take_naming_it_with_nothing_created()
    {
        var db = await server.FreshMigratedDatabaseAsync("legacy_types_refused");
        await Sql.ExecuteAsync(db, LegacyTable.CreateTable);
        await Sql.ExecuteAsync(db, "ALTER TABLE todos ALTER COLUMN depth TYPE numeric, ALTER COLUMN priority TYPE text, DROP COLUMN ai_generated");

        var start = await OperatorCli.RunAsync(["legacy", "start"], db);

        Assert.True(start.ExitCode == 1, start.Output);
        Assert.Contains("`todos` cannot be migrated as it is", start.Output);
        Assert.Contains("column priority is text, which the migration cannot take (smallint, integer or bigint expected)", start.Output);
        Assert.Contains("column depth is numeric, which the migration cannot take (smallint, integer or bigint expected)", start.Output);
        Assert.Contains("column ai_generated is missing (boolean expected)", start.Output);
        Assert.Contains("nothing was created", start.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM legacy_migration"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'todos'::regclass AND NOT tgisinternal"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_indexes WHERE tablename = 'todos' AND indexname <> 'todos_pkey'"));
        Assert.False(await Sql.ScalarAsync<bool>(db, "SELECT to_regnamespace('todoscale_legacy') IS NOT NULL"));
    }

    [Fact]
    public async Task The_same_columns_as_smallint_bigint_text_and_varchar_in_another_order_migrate_row_for_row()
    {
        var db = await server.FreshMigratedDatabaseAsync("legacy_types_kin");
        // Not the original's order or types: depth bigint first, priority smallint, texts as text and varchar(n).
        await Sql.ExecuteAsync(db,
            """
            CREATE TABLE todos (
                depth bigint DEFAULT 0, title text NOT NULL, status text DEFAULT 'todo', id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
                priority smallint DEFAULT 3, user_id uuid NOT NULL, updated_at timestamptz DEFAULT now(), created_at timestamptz DEFAULT now(),
                ai_generated boolean DEFAULT false, completed_at timestamptz, due_date timestamptz, description varchar(2000),
                project_id uuid, parent_todo_id uuid);
            INSERT INTO todos (id, user_id, title, status, priority, depth, completed_at, description)
            SELECT md5('root' || u || g)::uuid, md5('user' || u)::uuid, 'root ' || g, 'done', 1 + g % 5, 0, now() - interval '1 day', 'd ' || g
              FROM generate_series(1, 30) u, generate_series(1, 5) g;
            INSERT INTO todos (id, user_id, parent_todo_id, title, depth)
            SELECT md5('child' || id)::uuid, user_id, id, 'child of ' || title, 1 FROM todos WHERE depth = 0;
            INSERT INTO todos (id, user_id, parent_todo_id, title, depth)
            SELECT md5('grandchild' || id)::uuid, user_id, id, 'grandchild', 2 FROM todos WHERE depth = 1;
            """);

        var start = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(start.ExitCode == 0, start.Output);
        var backfill = await OperatorCli.RunAsync(["legacy", "backfill"], db);
        Assert.True(backfill.ExitCode == 0, backfill.Output);
        Assert.Contains("read 450 rows: 450 taken, 0 rejected; copied 450", backfill.Output);
        var validate = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(validate.ExitCode == 0, validate.Output);
        Assert.Contains("450 rows in todos: 450 taken, 0 rejected, 0 other; 450 rows in TodoScale, 0 only there; 0 mismatch(es)", validate.Output);
        Assert.Equal(await Sql.ScalarAsync<string>(db, LegacyData.LegacyChecksum), await Sql.ScalarAsync<string>(db, LegacyData.TodoScaleChecksum));

        // What only such a table can hold, written through the trigger: a title longer than TodoScale's 500
        // characters, and an update that moves a todo to another user. Both writes succeed; both rows are rejected.
        var (longTitle, moved) = (Guid.CreateVersion7(), await Sql.ScalarAsync<Guid>(db, "SELECT id FROM todos WHERE depth = 2 ORDER BY id LIMIT 1"));
        await Sql.ExecuteAsync(db,
            $"""
            INSERT INTO todos (id, user_id, title) VALUES ('{longTitle}', gen_random_uuid(), repeat('x', 501));
            UPDATE todos SET user_id = gen_random_uuid() WHERE id = '{moved}';
            """);
        Assert.Equal(["title_too_long: the title is 501 characters long (500 at most)", $"user_changed: todo {moved} changed user: user_id never changes in TodoScale"],
            await Sql.ColumnAsync<string>(db, $"SELECT reason || ': ' || message FROM legacy_rejects ORDER BY id = '{moved}'"));
        var rejected = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(rejected.ExitCode == 1, rejected.Output);
        Assert.Contains("451 rows in todos: 449 taken, 2 rejected (title_too_long 1, user_changed 1), 0 other;", rejected.Output);
    }

    /// <summary>A migrated TodoScale database that also holds a legacy `todos` table with trees.</summary>
    private async Task<string> LegacyDatabaseAsync(string hint, int users, int rootsPerUser)
    {
        var db = await server.FreshMigratedDatabaseAsync(hint);
        await LegacyData.SeedAsync(db, users, rootsPerUser);
        return db;
    }
}
