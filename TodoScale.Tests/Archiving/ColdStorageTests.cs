using System.IO.Compression;
using System.Text;
using Npgsql;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Worker;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using TodoScale.Testing;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Archiving;

/// <summary>
/// Retention to cold storage and back, on a real PostgreSQL with real files. Every month is counted back from the
/// clock the code under test reads: the <see cref="FixedClock"/> set to the time the test started, or, where the
/// test runs the real CLI, the wall clock (with a month to spare, since the CLI reads it a little later).
/// </summary>
public abstract class ColdStorageTests(IDatabaseEngine server) : IDisposable
{
    private readonly DateTimeOffset Now = FixedClock.WallNow();

    /// <summary>Long past retention (34 months before the current one).</summary>
    private DateOnly Oldest => Current.AddMonths(-34);

    /// <summary>One month past retention: the newest month a 24-month retention moves to cold storage.</summary>
    private DateOnly PastRetention => Current.AddMonths(-25);

    /// <summary>Exactly 24 months before the current month: the oldest month retention keeps.</summary>
    private DateOnly Kept => Current.AddMonths(-24);

    /// <summary>A month long before anything here was archived.</summary>
    private DateOnly Never => Current.AddMonths(-120);

    private DateOnly Current => ArchiveMonths.MonthOf(Now);

    private readonly string _folder = Directory.CreateTempSubdirectory("todoscale-cold-").FullName;

    /// <summary>Two copy folders (the "second region"), apart from the first.</summary>
    private readonly string[] _copies = [Directory.CreateTempSubdirectory("todoscale-cold-copy-a-").FullName, Directory.CreateTempSubdirectory("todoscale-cold-copy-b-").FullName];

    public void Dispose()
    {
        foreach (var folder in _copies.Append(_folder))
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [EngineFact]
    public async Task Every_export_is_copied_and_verified_and_a_restore_reads_a_copy_when_the_first_file_is_damaged()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_copies");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        var before = await ContentAsync(db, "todos_archived");
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var options = Options();
        options.ColdCopyFolders = _copies;
        var cold = new ColdStore(owner, options, new FixedClock(Now));

        var export = await cold.ExportAsync(Oldest, drop: true, "operator", "test", default);

        // Each copy holds the month: the same manifest, every file with the manifest's sha256.
        foreach (var copy in _copies)
        {
            var folder = Path.Combine(copy, Format(Oldest));
            Assert.Equal(export.Manifest.ToJson(), await File.ReadAllTextAsync(Path.Combine(folder, ColdManifest.FileName)));
            foreach (var table in export.Manifest.Tables)
            {
                await using var file = File.OpenRead(Path.Combine(folder, table.File));
                Assert.Equal(table.FileSha256, Convert.ToHexStringLower(await System.Security.Cryptography.SHA256.HashDataAsync(file)));
            }
        }

        Assert.Equal(1L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM audit_log WHERE action = 'cold.copy' AND target = '{Format(Oldest)}'"));
        Assert.Null(await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));

        // The first folder's file damaged (one byte), the first copy's gone: the restore reads the second copy.
        var todosFile = export.Manifest.Tables.Single(t => t.Table == "todos_archived").File;
        await using (var damaged = File.Open(Path.Combine(_folder, Format(Oldest), todosFile), FileMode.Open, FileAccess.ReadWrite))
        {
            damaged.Position = damaged.Length / 2;
            var b = damaged.ReadByte();
            damaged.Position = damaged.Length / 2;
            damaged.WriteByte((byte)(b ^ 0xFF));
        }

        File.Delete(Path.Combine(_copies[0], Format(Oldest), todosFile));
        var restored = await cold.RestoreAsync(Oldest, "operator", "test", default);
        Assert.Contains(Path.Combine(_copies[1], Format(Oldest)), restored.Sources);
        Assert.Equal(before, await ContentAsync(db, "todos_archived"));

        // The check finds both (the first folder damaged, the first copy missing) and makes them again from the intact copy.
        var states = await cold.CheckCopiesAsync(deep: true, repair: true, default);
        Assert.Equal(2, states.Count(s => s.Repaired));
        Assert.All(states, s => Assert.Equal(ColdCopyState.Ok, s.State));
        Assert.Equal(3, states.Count); // the first folder and two copies, one month
        Assert.All((await cold.CheckCopiesAsync(deep: true, repair: false, default)), s => Assert.False(s.Repaired));

        // The same through the operators' CLI: a copy gone is reported (exit 1), then made again with --repair.
        (string, string)[] settings = [("Maintenance__ColdStorageFolder", _folder), ("Maintenance__ColdCopyFolders__0", _copies[0]), ("Maintenance__ColdCopyFolders__1", _copies[1])];
        File.Delete(Path.Combine(_copies[1], Format(Oldest), ColdManifest.FileName));
        var verify = await OperatorCli.RunAsync(["cold", "verify"], db, settings);
        Assert.True(verify.ExitCode == 1, verify.Output);
        Assert.Contains($"cold verify: {Format(Oldest)} in {_copies[1]}: missing (no manifest)", verify.Output);
        Assert.Contains("cold verify: 2 of 3 copies intact (3 folder(s) x 1 month(s)), 0 repaired, 1 missing or damaged", verify.Output);
        var repair = await OperatorCli.RunAsync(["cold", "verify", "--repair"], db, settings);
        Assert.True(repair.ExitCode == 0, repair.Output);
        Assert.Contains("3 of 3 copies intact (3 folder(s) x 1 month(s)), 1 repaired, 0 missing or damaged", repair.Output);
        var none = await OperatorCli.RunAsync(["cold", "verify"], db, ("Maintenance__ColdStorageFolder", _folder));
        Assert.Equal(1, none.ExitCode);
        Assert.Contains("no copy folders are set", none.Output);

        // Damaged everywhere: refused, nothing restored.
        await using (var connection = await Sql.OpenAsync(db))
        {
            await Sql.ExecuteAsync(connection, $"DROP TABLE {Part("todos_archived", Oldest)}, {Part("ai_interactions_archived", Oldest)}");
        }

        foreach (var folder in _copies.Append(_folder))
        {
            await File.WriteAllTextAsync(Path.Combine(folder, Format(Oldest), todosFile), "not the export");
        }

        var refused = await Assert.ThrowsAsync<ColdVerificationException>(() => cold.RestoreAsync(Oldest, "operator", "test", default));
        Assert.Contains("in every copy", refused.Message);
        Assert.Null(await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));
    }

    [EngineFact]
    public async Task A_copy_that_cannot_be_made_fails_the_export_and_the_month_stays_in_the_database()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_copy_fails");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        var rows = await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM {Part("todos_archived", Oldest)}");
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var options = Options();
        var unwritable = Path.Combine(_copies[1], "a-file-not-a-folder");
        await File.WriteAllTextAsync(unwritable, "in the way");
        options.ColdCopyFolders = [_copies[0], unwritable];
        var cold = new ColdStore(owner, options, new FixedClock(Now));

        var failed = await Assert.ThrowsAsync<ColdStorageException>(() => cold.ExportAsync(Oldest, drop: true, "operator", "test", default));

        Assert.Contains("1 of its 2 copies failed", failed.Message);
        Assert.Contains(unwritable, failed.Message);
        Assert.Equal(rows, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM {Part("todos_archived", Oldest)}"));
        Assert.True(File.Exists(Path.Combine(_copies[0], Format(Oldest), ColdManifest.FileName))); // the copy that could be made is made
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM audit_log WHERE action = 'cold.copy.failed' AND target = '{Format(Oldest)}'"));
    }

    private MaintenanceOptions Options() => new() { ColdStorageFolder = _folder, RetentionMonths = 24, ReindexMinBytes = 64 * 1024 };

    [EngineFact]
    public async Task Retention_exports_verifies_and_drops_months_past_24_and_restore_brings_back_identical_rows()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_retention");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        var todosBefore = await ContentAsync(db, "todos_archived");
        var aiBefore = await ContentAsync(db, "ai_interactions_archived");
        var januaryRows = await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM {Part("todos_archived", Oldest)}");
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var cold = new ColdStore(owner, Options(), new FixedClock(Now));
        var upkeep = new Upkeep(owner, new ArchiveOptions(), cold, new IndexMaintenance(owner, Options()), new FixedClock(Now));

        var result = await upkeep.RunAsync(reindex: false, "operator", "test", null, default);

        // Retention keeps 24 months before the current one: PastRetention and older go, Kept stays.
        Assert.Empty(result.Failed);
        Assert.Equal([Format(Oldest), Format(PastRetention)], result.Exported.Select(e => e.Manifest.Month));
        foreach (var gone in new[] { Part("todos_archived", Oldest), Part("ai_interactions_archived", Oldest), Part("todos_archived", PastRetention), Part("ai_interactions_archived", PastRetention) })
        {
            Assert.Null(await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{gone}')::text"));
        }

        Assert.Equal(3000L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM {Part("todos_archived", Kept)}"));
        var manifest = cold.ReadManifest(Oldest)!;
        Assert.Equal(Format(Oldest), manifest.Month);
        // The schema version is the last migration applied (the file name's V<n>).
        var latest = SchemaMigrator.EmbeddedMigrations()[^1];
        Assert.Equal(latest[1..latest.IndexOf("__", StringComparison.Ordinal)], manifest.SchemaVersion);
        var todos = manifest.Tables.Single(t => t.Table == "todos_archived");
        Assert.Equal(januaryRows, todos.Rows);
        Assert.Equal(32, todos.ContentChecksum.Length);
        Assert.Equal(1000L, manifest.Tables.Single(t => t.Table == "ai_interactions_archived").Rows);
        Assert.True(File.Exists(Path.Combine(_folder, Format(Oldest), "todos_archived.csv.gz")));
        Assert.True(manifest.CompressionRatio > 2, $"compression {manifest.CompressionRatio:0.00}x");
        Assert.Equal(0L, cold.ReadManifest(PastRetention)!.Tables.Single(t => t.Table == "ai_interactions_archived").Rows);
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM audit_log WHERE action = 'cold.export'"));
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM audit_log WHERE action = 'cold.drop'"));

        // A second run finds nothing due and changes nothing.
        var again = await upkeep.RunAsync(reindex: false, "operator", "test", null, default);
        Assert.Empty(again.Exported);
        Assert.Equal(0, again.MonthsCreated);

        var restored = await cold.RestoreAsync(Oldest, "operator", "test", default);
        await cold.RestoreAsync(PastRetention, "operator", "test", default);

        Assert.Equal([Part("todos_archived", Oldest), Part("ai_interactions_archived", Oldest)], restored.Partitions);
        Assert.Equal(todosBefore, await ContentAsync(db, "todos_archived"));
        Assert.Equal(aiBefore, await ContentAsync(db, "ai_interactions_archived"));
        Assert.Equal($"FOR VALUES FROM ('{Format(Oldest)}-01 00:00:00+00') TO ('{Format(Oldest.AddMonths(1))}-01 00:00:00+00')", await Sql.ScalarAsync<string>(db,
            $"SET TimeZone = 'UTC'; SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = '{Part("todos_archived", Oldest)}'"));
        // The restored partition has the tenant wall and the grants of its parent, and the parent's indexes.
        Assert.True(await Sql.ScalarAsync<bool>(db, $"SELECT relrowsecurity AND relforcerowsecurity = {(server.ForcesRowSecurity ? "true" : "false")} FROM pg_class WHERE relname = '{Part("todos_archived", Oldest)}'"));
        Assert.True(await Sql.ScalarAsync<bool>(db, $"SELECT has_table_privilege('todoscale_app', '{Part("todos_archived", Oldest)}', 'SELECT')"));
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_indexes WHERE tablename = '{Part("todos_archived", Oldest)}'"));
        Assert.Equal(2L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM audit_log WHERE action = 'cold.restore'"));
        var user = await Sql.ScalarAsync<Guid>(db, $"SELECT user_id FROM {Part("todos_archived", Oldest)} LIMIT 1");
        // As the API reads it: the app's role, the tenant named for the transaction.
        await using (var connection = await Sql.OpenAsync(Roles.As(db, Roles.App)))
        await using (var transaction = await connection.BeginTenantTransactionAsync(user))
        {
            Assert.Equal(await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM {Part("todos_archived", Oldest)} WHERE user_id = '{user}'"),
                await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM todos_archived WHERE archived_at < '{Format(Oldest.AddMonths(1))}-01'", transaction));
        }

        // Restoring a month that is live again is refused, and nothing changes.
        var live = await Assert.ThrowsAsync<ColdStorageException>(() => cold.RestoreAsync(Oldest, "operator", "test", default));
        Assert.Contains("is live", live.Message);
        Assert.Equal(todosBefore, await ContentAsync(db, "todos_archived"));
    }

    public static TheoryData<string> Corruptions => ["drop a row", "change a title", "not gzip"];

    [EngineTheory]
    [MemberData(nameof(Corruptions))]
    public async Task An_export_that_does_not_read_back_exactly_keeps_the_partition_and_reports_the_failure(string corruption)
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_corrupt");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        var before = await ContentAsync(db, "todos_archived");
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var cold = new ColdStore(owner, Options(), new FixedClock(Now)) { AfterWrite = path => Corrupt(path, corruption) };

        var failure = await Assert.ThrowsAsync<ColdVerificationException>(() => cold.ExportAsync(Oldest, drop: true, "operator", "test", default));

        Assert.Contains($"{Part("todos_archived", Oldest)} is kept", failure.Message);
        Assert.Equal(before, await ContentAsync(db, "todos_archived"));
        Assert.Equal(Part("todos_archived", Oldest), await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));
        Assert.Null(cold.ReadManifest(Oldest));
        Assert.Empty(Directory.GetFileSystemEntries(_folder)); // the staging folder went with the failure
        Assert.Equal(1L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM audit_log WHERE action = 'cold.export.failed' AND target = '{Format(Oldest)}'"));
    }

    [EngineFact]
    public async Task A_damaged_file_or_a_changed_table_is_refused_by_restore_with_nothing_created()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_restore_refused");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var cold = new ColdStore(owner, Options(), new FixedClock(Now));
        await cold.ExportAsync(Oldest, drop: true, "operator", "test", default);

        var file = Path.Combine(_folder, Format(Oldest), "ai_interactions_archived.csv.gz");
        var original = await File.ReadAllBytesAsync(file);
        await Corrupt(file, "change a title");
        var damaged = await Assert.ThrowsAsync<ColdVerificationException>(() => cold.RestoreAsync(Oldest, "operator", "test", default));
        Assert.Contains("sha256", damaged.Message);
        Assert.Null(await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));
        await File.WriteAllBytesAsync(file, original);

        await Sql.ExecuteAsync(db, "ALTER TABLE todos_archived ADD COLUMN labels text");
        var changed = await Assert.ThrowsAsync<ColdStorageException>(() => cold.RestoreAsync(Oldest, "operator", "test", default));
        Assert.Contains($"has changed since {Format(Oldest)} was exported", changed.Message);
        Assert.Null(await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));

        await Sql.ExecuteAsync(db, "ALTER TABLE todos_archived DROP COLUMN labels");
        Assert.Equal(3000L, (await cold.RestoreAsync(Oldest, "operator", "test", default)).Manifest.Tables[0].Rows);
    }

    [Trait(Traits.Needs, Traits.ServerTimers)]
    [EngineFact(PostgresOnly = "it leaves a DETACH CONCURRENTLY pending; Citus has no concurrent detach (ColdStore detaches plainly there)")]
    public async Task A_drop_interrupted_during_or_after_the_detach_is_finished_by_the_next_run_with_nothing_lost()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_interrupted");
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, Kept);
        var before = await ContentAsync(db, "todos_archived");
        var aiBefore = await ContentAsync(db, "ai_interactions_archived");
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var cold = new ColdStore(owner, Options(), new FixedClock(Now));
        await cold.ExportAsync(Oldest, drop: false, "operator", "test", default);
        await cold.ExportAsync(PastRetention, drop: false, "operator", "test", default);
        // The oldest month's AI month was dropped after the export, and the run died before the todos month.
        await Sql.ExecuteAsync(db, $"DROP TABLE {Part("ai_interactions_archived", Oldest)}");

        // The oldest month: a DETACH CONCURRENTLY cut off while it waited for an older transaction: "detach pending".
        await using (var reader = await Sql.OpenAsync(db))
        await using (var holding = await reader.BeginTransactionAsync())
        {
            await Sql.ScalarAsync<long>(reader, "SELECT count(*) FROM todos_archived", holding);
            await using var detacher = await Sql.OpenAsync(db);
            await Sql.ExecuteAsync(detacher, "SET statement_timeout = '1s'");
            await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecuteAsync(detacher, $"ALTER TABLE todos_archived DETACH PARTITION {Part("todos_archived", Oldest)} CONCURRENTLY"));
        }

        Assert.True(await Sql.ScalarAsync<bool>(db, $"SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = '{Part("todos_archived", Oldest)}'::regclass"));
        // The month past retention: detached, then the process died before the drop.
        await Sql.ExecuteAsync(db, $"ALTER TABLE todos_archived DETACH PARTITION {Part("todos_archived", PastRetention)}");
        var refused = await Assert.ThrowsAsync<ColdStorageException>(() => cold.RestoreAsync(PastRetention, "operator", "test", default));
        Assert.Contains("not attached (an interrupted drop)", refused.Message);

        var upkeep = new Upkeep(owner, new ArchiveOptions(), cold, new IndexMaintenance(owner, Options()), new FixedClock(Now));
        var result = await upkeep.RunAsync(reindex: false, "operator", "test", null, default);

        Assert.Empty(result.Failed);
        Assert.Equal([Format(Oldest), Format(PastRetention)], result.Exported.Select(e => e.Manifest.Month));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_class WHERE relname IN ('{Part("todos_archived", Oldest)}', '{Part("ai_interactions_archived", Oldest)}', '{Part("todos_archived", PastRetention)}', '{Part("ai_interactions_archived", PastRetention)}')"));
        Assert.Equal(["todos_archived", "ai_interactions_archived"], cold.ReadManifest(Oldest)!.Tables.Select(t => t.Table));
        await cold.RestoreAsync(Oldest, "operator", "test", default);
        await cold.RestoreAsync(PastRetention, "operator", "test", default);
        Assert.Equal(before, await ContentAsync(db, "todos_archived"));
        Assert.Equal(aiBefore, await ContentAsync(db, "ai_interactions_archived"));
    }

    [EngineFact]
    public async Task The_cold_and_partitions_verbs_print_their_tables_and_refuse_bad_input_with_a_message()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_cli");
        // The CLI reads the wall clock a little after this test did: the month it keeps is 23 months back, not 24, so
        // the expectations hold even when the month turns between the two readings.
        var kept = Current.AddMonths(-23);
        await SeedArchiveMonthsAsync(db, Oldest, PastRetention, kept);
        var folder = ("Maintenance__ColdStorageFolder", _folder);

        var export = await OperatorCli.RunAsync(["cold", "export", Format(Oldest)], db, folder);
        Assert.True(export.ExitCode == 0, export.Output);
        Assert.Contains($"cold export: {Format(Oldest)}: 4,000 rows", export.Output);
        Assert.Contains("read back and verified", export.Output);
        Assert.Equal(Part("todos_archived", Oldest), await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", Oldest)}')::text"));

        var list = await OperatorCli.RunAsync(["cold", "list"], db, folder);
        Assert.True(list.ExitCode == 0, list.Output);
        Assert.Contains(Format(Oldest), list.Output);
        Assert.Contains("live too", list.Output);
        Assert.Contains("cold list: 1 month(s), 4,000 rows", list.Output);

        var maintain = await OperatorCli.RunAsync(["maintain", "--once"], db, folder, ("Maintenance__ReindexMinBytes", "65536"));
        Assert.True(maintain.ExitCode == 0, maintain.Output);
        Assert.Contains($"maintain: {Format(Oldest)} to cold storage", maintain.Output);
        Assert.Contains($"maintain: {Format(PastRetention)} to cold storage", maintain.Output);
        Assert.Contains("index(es) rebuilt", maintain.Output);

        var status = await OperatorCli.RunAsync(["partitions", "status", "--exact"], db, folder);
        Assert.True(status.ExitCode == 0, status.Output);
        Assert.Contains(server.Engine == "citus" ? "todos_active: 8 shards" : "todos_active_p15", status.Output);
        Assert.Contains(Format(kept), status.Output);
        Assert.Contains($"partitions: todos_active {server.ActiveUnits} {(server.Engine == "citus" ? "shards" : "partitions")}", status.Output);

        var restore = await OperatorCli.RunAsync(["cold", "restore", Format(PastRetention)], db, folder);
        Assert.True(restore.ExitCode == 0, restore.Output);
        Assert.Contains($"cold restore: {Format(PastRetention)}: 3,000 rows back in {Part("todos_archived", PastRetention)}", restore.Output);

        foreach (var (args, exit, message) in new (string[], int, string)[]
                 {
                     (["cold", "restore", "2024-13"], 2, "'2024-13' is not a month; use yyyy-mm"),
                     (["cold", "restore", Format(Never)], 1, $"there is no export of {Format(Never)}"),
                     (["cold", "export", Format(Never)], 1, $"there is no archive partition for {Format(Never)}"),
                     (["cold", "restore", Format(PastRetention)], 1, $"{Format(PastRetention)} is live"),
                     (["maintain"], 2, "--once"),
                 })
        {
            var refused = await OperatorCli.RunAsync(args, db, folder);
            Assert.True(refused.ExitCode == exit, $"{string.Join(' ', args)}: exit {refused.ExitCode}: {refused.Output}");
            Assert.Contains(message, refused.Output);
        }

        var bad = await OperatorCli.RunAsync(["maintain", "--once"], db, folder, ("Maintenance__RetentionMonths", "0"));
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("Maintenance:RetentionMonths", bad.Output);
        Assert.Equal(Part("todos_archived", kept), await Sql.ScalarAsync<string?>(db, $"SELECT to_regclass('{Part("todos_archived", kept)}')::text"));
    }

    /// <summary>
    /// On one PostgreSQL the indexes are the user's partition's; on Citus its shard's, measured and rebuilt on the
    /// worker that holds it (the coordinator's table has no rows to index). A second user's rows, in another
    /// partition (shard), are left dense: their index is measured and left alone.
    /// </summary>
    [EngineFact]
    public async Task Reindex_rebuilds_an_index_that_deletes_left_half_empty_and_leaves_the_others()
    {
        var db = await server.FreshMigratedDatabaseAsync("cold_reindex");
        var citus = server.Engine == "citus";
        var minValues = citus ? await Sql.ColumnAsync<int>(db, "SELECT shardminvalue::int FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass ORDER BY 1") : [];
        int Place(Guid u) => citus ? PartitionHash.ShardIndex(u, minValues) : PartitionHash.PartitionIndex(u, 16);
        var user = Guid.CreateVersion7();
        var steady = Guid.CreateVersion7();
        while (Place(steady) == Place(user))
        {
            steady = Guid.CreateVersion7();
        }

        // The steady user's indexes freshly built (REINDEX TABLE: every partition, on Citus every shard), then the
        // other user's 40,000 todos, four in five deleted (by a hash of the id: Citus refuses a volatile predicate).
        await Sql.ExecuteAsync(db,
            $"""
            INSERT INTO todos_active (id, user_id, title, status, created_at)
            SELECT gen_random_uuid(), '{steady}', 'todo ' || g, 'todo', now() - make_interval(secs => g) FROM generate_series(1, 40000) g;
            """);
        await Sql.ExecuteAsync(db, "REINDEX TABLE todos_active");
        await Sql.ExecuteAsync(db,
            $"""
            INSERT INTO todos_active (id, user_id, title, status, created_at)
            SELECT gen_random_uuid(), '{user}', 'todo ' || g, 'todo', now() - make_interval(secs => g) FROM generate_series(1, 40000) g;
            DELETE FROM todos_active WHERE user_id = '{user}' AND abs(hashtext(id::text)) % 5 <> 0;
            """);
        await Sql.ExecuteAsync(db, "VACUUM todos_active");
        async Task<string> PartitionOf(Guid u) => citus
            ? $"todos_active_{await Sql.ScalarAsync<long>(db, $"SELECT get_shard_id_for_distribution_column('todos_active', '{u}')")}"
            : await Sql.ScalarAsync<string>(db, $"SELECT tableoid::regclass::text FROM todos_active WHERE user_id = '{u}' LIMIT 1");
        var partition = await PartitionOf(user);
        var steadyPartition = await PartitionOf(steady);
        await using var owner = ArchiverDataSource.Create(db, role: null);
        var indexes = new IndexMaintenance(owner, Options());
        Assert.Null(await indexes.UnavailableAsync(default));

        // The page's index of each: a partition's todos_active_p07_user_id_created_at_id_idx, on Citus the shard's copy
        // of the table's own index, todos_active_user_created_ix_102008.
        var measured = await indexes.MeasureAsync(default);
        IndexBloat PageIndex(string table) => measured.Single(i => i.Index == (citus ? $"todos_active_user_created_ix_{table["todos_active_".Length..]}" : $"{table}_user_id_created_at_id_idx"));
        var (before, left) = (PageIndex(partition), PageIndex(steadyPartition));
        Assert.Equal(citus, before.Node is not null);
        // Where an index is: this server, or on Citus the worker that holds the shard (its host and port, the same login).
        string Where(IndexBloat i) => i.Node is { } node ? new NpgsqlConnectionStringBuilder(db) { Host = node.Host, Port = node.Port }.ConnectionString : db;
        // On a worker, pg_class hides the shards from clients that are not Citus' own unless asked not to.
        Task<long> FileNode(IndexBloat i) => Sql.ScalarAsync<long>(Where(i),
            $"{(citus ? "SET citus.override_table_visibility = off; " : "")}SELECT relfilenode::bigint FROM pg_class WHERE relname = '{i.Index}'");
        var (filenode, other) = (await FileNode(before), await FileNode(left));
        var index = before.Index;
        var rebuilt = await indexes.ReindexBloatedAsync(null, default);

        Assert.True(before.BloatPercent >= 30, $"{index} bloat {before.BloatPercent:0}%");
        Assert.True(left.BloatPercent < 30, $"{left.Index} bloat {left.BloatPercent:0}%");
        Assert.Contains(rebuilt, i => i.Index == index);
        Assert.All(rebuilt, i => Assert.Equal(partition, i.Table));
        Assert.NotEqual(filenode, await FileNode(before));
        Assert.Equal(other, await FileNode(left));
        Assert.True((await indexes.MeasureAsync(default)).Single(i => i.Index == index).BloatPercent < 30);
        Assert.Empty(await indexes.ReindexBloatedAsync(null, default));

        // `serve` reindexes weekly, reading the last reindex from audit_log (so a restart does not reset the week).
        var clock = new FixedClock(DateTimeOffset.UtcNow);
        var upkeep = new Upkeep(owner, new ArchiveOptions(), new ColdStore(owner, Options(), clock), indexes, clock);
        Assert.True(await upkeep.ReindexDueAsync(TimeSpan.FromDays(7), default));
        await upkeep.RunAsync(reindex: true, "system", "schedule", null, default);
        Assert.False(await upkeep.ReindexDueAsync(TimeSpan.FromDays(7), default));
        clock.Now = clock.Now.AddDays(8);
        Assert.True(await upkeep.ReindexDueAsync(TimeSpan.FromDays(7), default));
    }

    /// <summary>
    /// Archive months <paramref name="oldest"/>, <paramref name="pastRetention"/> and <paramref name="kept"/> (3,000 todos each,
    /// 1,000 AI interactions in the oldest and the kept month),
    /// with text that CSV must round-trip: quotes, commas, newlines, tabs, backslashes, unicode, NULL beside ''.
    /// </summary>
    private static async Task SeedArchiveMonthsAsync(string db, DateOnly oldest, DateOnly pastRetention, DateOnly kept)
    {
        await Sql.ExecuteAsync(db,
            $"""
            SET TimeZone = 'UTC';
            SELECT todoscale_ensure_archive_months(t, d, 0)
              FROM unnest(ARRAY['todos_archived', 'ai_interactions_archived']::regclass[]) t,
                   unnest(ARRAY[date '{Day(oldest)}', '{Day(pastRetention)}', '{Day(kept)}']) d;
            INSERT INTO todos_archived (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                                        completed_at, ai_generated, depth, created_at, updated_at, archived_at)
            SELECT gen_random_uuid(), md5((g % 200)::text)::uuid, NULL, CASE WHEN g % 3 = 0 THEN gen_random_uuid() END,
                   'todo ' || g || CASE g % 5 WHEN 0 THEN ' "quoted", with comma' WHEN 1 THEN E' line\nbreak \\ and\ttab' WHEN 2 THEN ' ünïcødé ✓' ELSE '' END,
                   CASE g % 3 WHEN 0 THEN NULL WHEN 1 THEN '' ELSE repeat('details ', g % 40) END,
                   CASE WHEN g % 4 = 0 THEN 'cancelled' ELSE 'done' END, 1 + g % 5,
                   CASE WHEN g % 2 = 0 THEN m - interval '10 days' + make_interval(secs => g) END,
                   m - interval '40 days' + make_interval(secs => g * 7), g % 7 = 0, 0,
                   m - interval '100 days' + make_interval(secs => g * 13) + interval '0.123456 s', m - interval '40 days' + make_interval(secs => g * 7),
                   m + make_interval(secs => g * 600)
              FROM unnest(ARRAY[timestamptz '{Day(oldest)}', '{Day(pastRetention)}', '{Day(kept)}']) m, generate_series(1, 3000) g;
            INSERT INTO ai_interactions_archived (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at, archived_at)
            SELECT md5((g % 200)::text)::uuid, gen_random_uuid(), gen_random_uuid(), 'subtasks', 'model-1',
                   E'prompt\t"' || g || '"', CASE WHEN g % 2 = 0 THEN NULL ELSE 'response ' || repeat('x', g % 100) END,
                   g, g * 2, g % 1000, m - interval '200 days', m + make_interval(secs => g)
              FROM unnest(ARRAY[timestamptz '{Day(oldest)}', '{Day(kept)}']) m, generate_series(1, 1000) g;
            """);
    }

    private static string Part(string table, DateOnly month) => ArchiveMonths.PartitionName(table, month);

    private static string Format(DateOnly month) => ArchiveMonths.Format(month);

    private static string Day(DateOnly day) => day.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Every row of an archive table with every column, in key order (UTC text): equal means identical.</summary>
    private static async Task<(long, string)> ContentAsync(string db, string table)
    {
        await using var connection = await Sql.OpenAsync(db);
        await Sql.ExecuteAsync(connection, "SET TimeZone = 'UTC'");
        return (await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {table}"),
            await Sql.ScalarAsync<string>(connection, $"SELECT md5(string_agg(t::text, E'\\n' ORDER BY t.user_id, t.id, t.archived_at)) FROM {table} t"));
    }

    private static async Task Corrupt(string path, string how)
    {
        if (how == "not gzip")
        {
            await File.WriteAllTextAsync(path, "this is not what was exported");
            return;
        }

        string text;
        await using (var input = new GZipStream(File.OpenRead(path), CompressionMode.Decompress))
        using (var reader = new StreamReader(input, Encoding.UTF8))
        {
            text = await reader.ReadToEndAsync();
        }

        text = how == "drop a row"
            ? text[..text.TrimEnd('\n').LastIndexOf('\n')] + "\n"
            : ReplaceFirst(text, ",\"todo 1", ",\"todo 9").Replace("prompt\t\"\"1\"\"", "prompt\t\"\"7\"\"", StringComparison.Ordinal);
        await using var output = new GZipStream(File.Create(path), CompressionLevel.Fastest);
        await output.WriteAsync(Encoding.UTF8.GetBytes(text));
    }

    private static string ReplaceFirst(string text, string what, string with) =>
        text.IndexOf(what, StringComparison.Ordinal) is var at and >= 0 ? text[..at] + with + text[(at + what.Length)..] : text;
}

[Collection(PostgresCollection.Name)]
public sealed class ColdStorageTestsOnPostgres(PostgresServer server) : ColdStorageTests(server);

[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class ColdStorageTestsOnCitus(CitusCluster server) : ColdStorageTests(server);
