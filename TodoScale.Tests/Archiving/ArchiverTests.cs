using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using Npgsql;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Partitions;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Archiver.Worker;
using TodoScale.Data.Partitioning;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Archiving;

/// <summary>Archival passes on a real PostgreSQL, each test on a database of its own (a pass touches every row).</summary>
public abstract class ArchiverTests(IDatabaseEngine server, ITestOutputHelper log)
{
    /// <summary>
    /// The archiver's clock in these tests (a <see cref="FixedClock"/>): the time the test started, so the months it
    /// archives into and counts from are this month's, as the migrations' months (made from the database's now()) are.
    /// </summary>
    private readonly DateTimeOffset Now = FixedClock.WallNow();

    private static ArchiveOptions Options(int batchSize = 100, int parallel = 2, bool skipRowTriggers = true) =>
        new() { BatchSize = batchSize, Parallel = parallel, PauseBetweenBatches = TimeSpan.Zero, OlderThan = TimeSpan.FromDays(30), SkipRowTriggers = skipRowTriggers };

    [EngineFact]
    public async Task A_finished_subtree_moves_whole_and_a_tree_with_open_or_recent_work_stays_whole()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_subtrees");
        var user = Guid.CreateVersion7();
        await using var connection = await Sql.OpenAsync(db);
        var old = Now.AddDays(-40);
        var recent = Now.AddDays(-5);
        var movingRoot = await Insert(connection, user, null, "done", old);
        var movingChild = await Insert(connection, user, movingRoot, "cancelled", old);
        var movingGrandchild = await Insert(connection, user, movingChild, "done", old);
        var openChildRoot = await Insert(connection, user, null, "done", old);
        var openChild = await Insert(connection, user, openChildRoot, "in_progress", null);
        var recentChildRoot = await Insert(connection, user, null, "done", old);
        var recentChild = await Insert(connection, user, recentChildRoot, "done", recent);
        var openRoot = await Insert(connection, user, null, "todo", null);
        var finishedUnderOpen = await Insert(connection, user, openRoot, "done", old);
        var leaf = await Insert(connection, user, null, "done", old);
        var recentLeaf = await Insert(connection, user, null, "done", recent);
        var before = await ArchiveData.ChecksumAsync(db);

        await using var dataSource = ArchiverDataSource.Create(db, "todoscale_archiver");
        var result = await new TodoArchiver(dataSource, Options(), new FixedClock(Now)).RunPassAsync(null, default);

        Assert.Equal(4, result.RowsMoved);
        Assert.Equal(2, result.RootsMoved);
        Assert.Equal(
            new[] { movingRoot, movingChild, movingGrandchild, leaf }.Order(),
            (await Sql.ColumnAsync<Guid>(connection, "SELECT id FROM todos_archived")).Order());
        Assert.Equal(
            new[] { openChildRoot, openChild, recentChildRoot, recentChild, openRoot, finishedUnderOpen, recentLeaf }.Order(),
            (await Sql.ColumnAsync<Guid>(connection, "SELECT id FROM todos_active")).Order());
        Assert.Equal(before, await ArchiveData.ChecksumAsync(db));
        await ArchiveData.AssertConsistentAsync(db, Now.AddDays(-30));
        // archived_at is the pass's time: the row sits in that month's partition.
        Assert.Equal(4L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {ArchiveMonths.PartitionName("todos_archived", Now)}"));

        // A second pass finds nothing more to move.
        var again = await new TodoArchiver(dataSource, Options(), new FixedClock(Now)).RunPassAsync(null, default);
        Assert.Equal(0, again.RowsMoved);
    }

    [EngineFact]
    public async Task A_pass_with_the_clock_two_months_ahead_makes_its_archive_month_first_and_upkeep_twice_changes_nothing()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_clock");
        var user = Guid.CreateVersion7();
        await using var connection = await Sql.OpenAsync(db);
        await Insert(connection, user, null, "done", Now.AddDays(-1));
        await using var dataSource = ArchiverDataSource.Create(db, "todoscale_archiver");
        var later = new FixedClock(Now.AddMonths(5));
        var archiver = new TodoArchiver(dataSource, Options(), later);

        var result = await archiver.RunPassAsync(null, default);

        Assert.Equal(1, result.RowsMoved);
        Assert.Equal(1L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {ArchiveMonths.PartitionName("todos_archived", later.Now)}"));
        var partitions = await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_archived'::regclass");
        Assert.Equal(0, await archiver.EnsureArchiveMonthsAsync(later.Now, default));
        Assert.Equal(partitions, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_archived'::regclass"));
        // Each new month got the tenant wall in the same transaction that made it.
        Assert.True(await Sql.ScalarAsync<bool>(connection, $"SELECT relrowsecurity AND relforcerowsecurity = {(server.ForcesRowSecurity ? "true" : "false")} FROM pg_class WHERE relname = '{ArchiveMonths.PartitionName("todos_archived", ArchiveMonths.MonthOf(later.Now).AddMonths(3))}'"));
    }

    [EngineTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_subtask_committed_under_a_moving_todo_while_its_batch_waits_stays_with_its_tree(bool skipRowTriggers)
    {
        var db = await server.FreshMigratedDatabaseAsync($"archive_race_{skipRowTriggers}".ToLowerInvariant());
        var user = Guid.CreateVersion7();
        await using var connection = await Sql.OpenAsync(db);
        var root = await Insert(connection, user, null, "done", Now.AddDays(-40));
        var child = await Insert(connection, user, root, "done", Now.AddDays(-40));
        var before = await ArchiveData.ChecksumAsync(db);

        // A user adds a subtask under the finished root and has not committed yet: its foreign key check holds a
        // key-share lock on the root, so the batch's DELETE of the root waits for it.
        await using var writer = await Sql.OpenAsync(db);
        await using var transaction = await writer.BeginTransactionAsync();
        var late = await Insert(writer, user, root, "todo", null);
        await using var dataSource = ArchiverDataSource.Create(db + ";Application Name=archiver-race", "todoscale_archiver");
        var pass = new TodoArchiver(dataSource, Options(skipRowTriggers: skipRowTriggers), new FixedClock(Now)).RunPassAsync(null, default);
        var waited = false;
        for (var i = 0; i < 200 && !waited && !pass.IsCompleted; i++)
        {
            // On Citus the batch's DELETE waits on the worker that holds the user: the cluster-wide lock graph shows it.
            waited = await Sql.ScalarAsync<long>(connection, server.Engine == "citus"
                ? "SELECT count(*) FROM citus_lock_waits"
                : "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'archiver-race' AND wait_event_type = 'Lock'") > 0;
            await Task.Delay(50);
        }

        Assert.True(waited, "the batch never waited on the writer's lock");
        await transaction.CommitAsync();
        var result = await pass;

        // The batch saw the subtask after its move (or its cascade did), rolled back and retried: the tree now has
        // open work, so all three stay active and nothing is archived.
        Assert.Equal(skipRowTriggers, result.RowTriggersSkipped);
        Assert.Equal(0, result.RowsMoved);
        Assert.Equal(new[] { root, child, late }.Order(), (await Sql.ColumnAsync<Guid>(connection, "SELECT id FROM todos_active")).Order());
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_archived"));
        Assert.Equal(before.Count + 1, (await ArchiveData.ChecksumAsync(db)).Count);
        await ArchiveData.AssertConsistentAsync(db, Now.AddDays(-30));
    }

    [EngineTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_root_reopened_while_its_batch_waits_keeps_its_finished_subtasks_with_it(bool skipRowTriggers)
    {
        var db = await server.FreshMigratedDatabaseAsync($"archive_reopen_{skipRowTriggers}".ToLowerInvariant());
        var user = Guid.CreateVersion7();
        await using var connection = await Sql.OpenAsync(db);
        var root = await Insert(connection, user, null, "done", Now.AddDays(-40));
        var child = await Insert(connection, user, root, "done", Now.AddDays(-40));
        var grandchild = await Insert(connection, user, child, "cancelled", Now.AddDays(-45));

        // The user reopens the finished root and has not committed yet: the pass reads the tree as finished (the
        // committed version) and its delete of the root waits on the writer's row lock; the subtasks are not locked.
        await using var writer = await Sql.OpenAsync(db);
        await using var transaction = await writer.BeginTransactionAsync();
        await using (var reopen = new NpgsqlCommand("UPDATE todos_active SET status = 'todo', completed_at = NULL WHERE user_id = $1 AND id = $2", writer, transaction))
        {
            reopen.Parameters.AddWithValue(user);
            reopen.Parameters.AddWithValue(root);
            Assert.Equal(1, await reopen.ExecuteNonQueryAsync());
        }

        await using var dataSource = ArchiverDataSource.Create(db + ";Application Name=archiver-reopen", "todoscale_archiver");
        var pass = new TodoArchiver(dataSource, Options(skipRowTriggers: skipRowTriggers), new FixedClock(Now)).RunPassAsync(null, default);
        var waited = await Progress.UntilAsync<long>(connection, server.Engine == "citus"
                ? "SELECT count(*) FROM citus_lock_waits"
                : "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'archiver-reopen' AND wait_event_type = 'Lock'",
            waiting => waiting > 0, () => pass.IsCompleted, "the batch waiting on the writer's lock on the root");
        Assert.True(waited, $"the pass ended without waiting on the writer: {pass.Status}");
        await transaction.CommitAsync();
        var result = await pass;

        // The root's re-check left it where it is; its subtasks, which still qualify on their own, were not moved
        // without it (a subtask archived under an active root): the batch saw fewer rows moved than it read, rolled
        // back and read the tree again, which now has open work.
        Assert.Equal(0, result.RowsMoved);
        Assert.Equal(new[] { root, child, grandchild }.Order(), (await Sql.ColumnAsync<Guid>(connection, "SELECT id FROM todos_active")).Order());
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_archived"));
        await ArchiveData.AssertConsistentAsync(db, Now.AddDays(-30));
    }

    [EngineTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Nothing_is_lost_or_duplicated_while_a_writer_adds_subtasks_reopens_and_completes_during_the_pass(bool skipRowTriggers)
    {
        var db = await server.FreshMigratedDatabaseAsync($"archive_concurrent_{skipRowTriggers}".ToLowerInvariant());
        await ArchiveData.SeedTreesAsync(db, users: 300, rootsPerUser: 20, Now);
        var committed = new ConcurrentDictionary<Guid, bool>();
        using var stop = new CancellationTokenSource();
        var writes = new StrongBox<int>();
        var writer = Task.Run(() => WriteConcurrentlyAsync(db, committed, writes, stop.Token));

        // Passes until the writer has committed more than 50 changes while they ran (one pass may be quicker than
        // that on a fast machine); the writer's completions make more trees archivable for the next pass.
        await using var dataSource = ArchiverDataSource.Create(db, "todoscale_archiver");
        var archiver = new TodoArchiver(dataSource, Options(batchSize: 50, skipRowTriggers: skipRowTriggers), new FixedClock(Now));
        long moved = 0;
        for (var pass = 0; pass < 50 && (pass == 0 || Volatile.Read(ref writes.Value) <= 50); pass++)
        {
            var result = await archiver.RunPassAsync(null, default);
            Assert.Equal(skipRowTriggers, result.RowTriggersSkipped);
            moved += result.RowsMoved;
        }

        await stop.CancelAsync();
        await writer;

        Assert.True(moved > 1000, $"only {moved} rows moved");
        Assert.True(writes.Value > 50, $"the writer committed only {writes.Value} changes during the passes");
        await ArchiveData.AssertConsistentAsync(db, Now.AddDays(-30));
        await using var connection = await Sql.OpenAsync(db);
        var everywhere = (await Sql.ColumnAsync<Guid>(connection, "SELECT id FROM todos_active UNION ALL SELECT id FROM todos_archived")).ToHashSet();
        var lost = committed.Keys.Where(id => !everywhere.Contains(id)).ToList();
        Assert.True(lost.Count == 0, $"{lost.Count} committed todos in neither table: {string.Join(", ", lost.Take(5))}");
        Assert.True(300 * 20 * 4 + committed.Count == everywhere.Count,
            $"{300 * 20 * 4} seeded and {committed.Count} added todos, {everywhere.Count} found in the two tables ({moved} moved in the passes)");
    }

    [EngineFact]
    public async Task A_large_move_analyzes_what_it_emptied_and_filled_and_partition_stats_show_sizes_backlog_and_skew()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_analyze");
        // Read after the migrations premade their months from the database's clock: the archiver's month is theirs
        // or a later one, so exactly Premake months follow it whenever the test runs (a month turning included).
        var now = FixedClock.WallNow();
        await ArchiveData.SeedTreesAsync(db, users: 200, rootsPerUser: 10, now);
        await using var dataSource = ArchiverDataSource.Create(db, "todoscale_archiver");
        var options = Options(batchSize: 500);
        options.AnalyzeAfterRows = 100;
        var waiting = await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM todos_active WHERE status IN ('done', 'cancelled') AND completed_at < '{now.AddDays(-30):O}'");

        var before = await PartitionStats.ReadAsync(dataSource, options, now, exact: true, default);
        // What the statistics counted before the pass (the seed analyzes), which the share rule reads.
        var counted = (await Sql.ColumnAsync<string>(db, "SELECT relname || '=' || reltuples::bigint FROM pg_class WHERE relname LIKE 'todos_active_p%' AND relkind = 'r'"))
            .Select(p => p.Split('=')).ToDictionary(p => p[0], p => long.Parse(p[1], System.Globalization.CultureInfo.InvariantCulture));
        var passStart = await Sql.ScalarAsync<DateTime>(db, "SELECT clock_timestamp()");
        var result = await new TodoArchiver(dataSource, options, new FixedClock(now)).RunPassAsync(null, default);
        var after = await PartitionStats.ReadAsync(dataSource, options, now, exact: true, default);

        Assert.Equal(server.ActiveUnits, before.Active.Count(p => p.Table == "todos_active"));
        Assert.Equal(server.ActiveUnits, before.Active.Count(p => p.Table == "ai_interactions"));
        Assert.Equal(200L * 10 * 4, before.Active.Where(p => p.Table == "todos_active").Sum(p => p.Rows));
        Assert.Equal(200L, before.Active.Where(p => p.Table == "todos_active").Sum(p => p.Users));
        Assert.Equal(waiting, before.Active.Where(p => p.Table == "todos_active").Sum(p => p.Waiting));
        Assert.InRange(before.Skew("todos_active"), 1.0, 2.5);
        Assert.Equal(options.Premake, after.MonthsAhead);
        Assert.Equal(result.RowsMoved, after.ArchiveMonths.Single(m => m.Table == "todos_archived" && m.Key == ArchiveMonths.Format(ArchiveMonths.MonthOf(now))).Rows);
        Assert.Equal(200L * 10 * 4 - result.RowsMoved, after.Active.Where(p => p.Table == "todos_active").Sum(p => p.Rows));

        // Every partition that lost at least 100 rows and 10% of the rows its statistics counted (any number, if never
        // analyzed), and the month that gained them (made empty, so any share), were analyzed by the pass.
        var expected = result.Partitions
            .Where(p => p.RowsMoved >= 100 && (counted.GetValueOrDefault(p.Partition, -1) is var rows && (rows < 0 || p.RowsMoved >= 0.1 * rows)))
            .Select(p => p.Partition).Append(ArchiveMonths.PartitionName("todos_archived", now)).Order().ToList();
        Assert.True(expected.Count > 1, "the seed is too small for the threshold");
        Assert.Equal(expected, result.Analyzed.Order());
        var analyzed = await Sql.ColumnAsync<string>(db, $"SELECT relname::text FROM pg_stat_user_tables WHERE last_analyze >= '{passStart:O}'::timestamptz");
        Assert.All(expected, partition => Assert.Contains(partition, analyzed));

        // The estimate the archiver's gauges read every refresh (statistics where a unit is large, on Citus each
        // shard's from its worker): the same units, with rows (a statistics flush may lag the pass, so not compared).
        var estimated = await PartitionStats.ReadAsync(dataSource, options, now, exact: false, default);
        Assert.Equal(server.ActiveUnits, estimated.Active.Count(p => p.Table == "todos_active"));
        Assert.True(estimated.Active.Where(p => p.Table == "todos_active").Sum(p => p.Rows) > 0);
    }

    [EngineFact]
    public async Task Ai_interactions_older_than_the_ai_cutoff_move_with_their_content_unchanged()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_ai");
        await using var connection = await Sql.OpenAsync(db);
        await Sql.ExecuteAsync(connection,
            $"""
            INSERT INTO ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at)
            SELECT gen_random_uuid(), gen_random_uuid(), gen_random_uuid(), 'generate_subtasks', 'm', 'prompt ' || n, 'response', n, n * 2, n * 3,
                   '{Now:O}'::timestamptz - make_interval(days => n % 180)
              FROM generate_series(1, 3000) n
            """);
        const string checksum =
            """
            SELECT md5(string_agg(concat_ws('|', user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at), '' ORDER BY id))
              FROM (SELECT user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at FROM ai_interactions
                    UNION ALL
                    SELECT user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at FROM ai_interactions_archived) s
            """;
        var before = await Sql.ScalarAsync<string>(connection, checksum);
        var expected = await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM ai_interactions WHERE created_at < '{Now:O}'::timestamptz - interval '90 days'");
        await using var dataSource = ArchiverDataSource.Create(db, "todoscale_archiver");

        var result = await new TodoArchiver(dataSource, Options(batchSize: 100), new FixedClock(Now)).RunAiPassAsync(null, default);

        Assert.Equal(expected, result.RowsMoved);
        Assert.Equal(expected, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM ai_interactions_archived"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM ai_interactions WHERE created_at < '{Now:O}'::timestamptz - interval '90 days'"));
        Assert.Equal(before, await Sql.ScalarAsync<string>(connection, checksum));
    }

    [EngineFact]
    public async Task Two_archivers_at_once_move_every_row_exactly_once()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_twice");
        await ArchiveData.SeedTreesAsync(db, users: 200, rootsPerUser: 15, Now);
        var before = await ArchiveData.ChecksumAsync(db);
        await using var first = ArchiverDataSource.Create(db, "todoscale_archiver");
        await using var second = ArchiverDataSource.Create(db, "todoscale_archiver");

        var results = await Task.WhenAll(
            new TodoArchiver(first, Options(batchSize: 20, parallel: 4), new FixedClock(Now)).RunPassAsync(null, default),
            new TodoArchiver(second, Options(batchSize: 20, parallel: 4), new FixedClock(Now)).RunPassAsync(null, default));

        await using var connection = await Sql.OpenAsync(db);
        Assert.Equal(results.Sum(r => r.RowsMoved), await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_archived"));
        Assert.Equal(before, await ArchiveData.ChecksumAsync(db));
        await ArchiveData.AssertConsistentAsync(db, Now.AddDays(-30));
        // Whatever the interleaving, a third pass finds nothing the two left behind.
        await using var third = ArchiverDataSource.Create(db, "todoscale_archiver");
        Assert.Equal(0, (await new TodoArchiver(third, Options(), new FixedClock(Now)).RunPassAsync(null, default)).RowsMoved);
    }

    [EngineFact]
    public async Task Ten_callers_making_the_same_new_months_at_once_create_each_exactly_once_and_none_fails()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_months_race");
        // Months nobody made: a year after the archiver's today, and two after that (premade months go 3 ahead).
        var clock = new FixedClock(Now.AddYears(1));
        var months = Enumerable.Range(0, 3).Select(i => ArchiveMonths.MonthOf(clock.Now).AddMonths(i)).ToList();
        var names = months.SelectMany(m => ArchiveMonths.Tables.Select(t => ArchiveMonths.PartitionName(t, m))).ToList();
        await using var connection = await Sql.OpenAsync(db);
        foreach (var name in names)
        {
            Assert.Null(await Sql.ScalarAsync<string?>(connection, $"SELECT to_regclass('{name}')::text"));
        }

        // A reader holds todos_archived, so whoever creates a month waits for it (CREATE TABLE .. PARTITION OF takes
        // the parent's ACCESS EXCLUSIVE lock) while the others arrive: all ten are in flight at once.
        await using var reader = await Sql.OpenAsync(db);
        await using var reading = await reader.BeginTransactionAsync();
        await Sql.ScalarAsync<long>(reader, "SELECT count(*) FROM todos_archived", reading);

        const string app = "months-race";
        await using var archiver = ArchiverDataSource.Create(db + $";Application Name={app};Maximum Pool Size=20", "todoscale_archiver");
        await using var owner = ArchiverDataSource.Create(db + $";Application Name={app};Maximum Pool Size=20", role: null);
        var cold = new MaintenanceOptions { ColdStorageFolder = Directory.CreateTempSubdirectory("todoscale-cold-").FullName };
        var options = Options();
        options.Premake = 2;
        var callers = new List<Task<int>>();
        try
        {
            // The archiver's upkeep before a pass, twice; maintain's upkeep (as the owner), twice; four bare calls as the
            // archiver role and two as the owner (what `migrate` runs).
            callers.AddRange(Enumerable.Range(0, 2).Select(_ => Task.Run(() => new TodoArchiver(archiver, options, clock).EnsureArchiveMonthsAsync(clock.Now, default))));
            callers.AddRange(Enumerable.Range(0, 2).Select(_ => Task.Run(async () =>
                (await new Upkeep(owner, options, new ColdStore(owner, cold, clock), new IndexMaintenance(owner, cold), clock)
                    .RunAsync(reindex: false, "operator", "test", null, default)).MonthsCreated)));
            callers.AddRange(Enumerable.Range(0, 4).Select(_ => Task.Run(() => ArchiveMonths.EnsureAsync(archiver, clock.Now, options.Premake, default))));
            callers.AddRange(Enumerable.Range(0, 2).Select(_ => Task.Run(() => ArchiveMonths.EnsureAsync(owner, clock.Now, options.Premake, default))));

            // Observed, not slept on: every caller is waiting on a lock before the reader lets go.
            // On Citus the one making a month waits on a worker (the reader's transaction holds the shards there), the
            // coordinator shows it active on its connection to the worker: every caller is in flight all the same.
            var allWaiting = await Progress.UntilAsync<long>(connection, server.Engine == "citus"
                    ? $"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND state = 'active' AND (wait_event_type = 'Lock' OR EXISTS (SELECT FROM citus_lock_waits))"
                    : $"SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' AND wait_event_type = 'Lock'",
                waiting => waiting == callers.Count, () => callers.Any(c => c.IsCompleted), $"{callers.Count} callers waiting on a lock");
            Assert.False(callers.Any(c => c.IsFaulted), string.Join("; ", callers.Where(c => c.IsFaulted).Select(c => c.Exception!.InnerException!.Message)));
            Assert.True(allWaiting, $"a caller finished while the reader held todos_archived: {string.Join(", ", callers.Select(c => c.Status))}");
            log.WriteLine($"{callers.Count} callers waiting on a lock at once for {string.Join(", ", names)}");
            await reading.CommitAsync();
            await Task.WhenAll(callers);
            log.WriteLine($"months created per caller (upkeep x2, maintain x2, archiver role x4, owner x2): {string.Join(", ", callers.Select(c => c.Result))}");
        }
        finally
        {
            Directory.Delete(cold.ColdStorageFolder, recursive: true);
        }

        // Each month was made by exactly one of them; every month is there once, a partition, with the tenant wall
        // and the archiver's grants.
        Assert.Equal(names.Count, callers.Sum(c => c.Result));
        Assert.All(callers, c => Assert.InRange(c.Result, 0, names.Count));
        foreach (var name in names)
        {
            Assert.True(await Sql.ScalarAsync<bool>(connection,
                $"SELECT relrowsecurity AND relforcerowsecurity = {(server.ForcesRowSecurity ? "true" : "false")} AND has_table_privilege('todoscale_archiver', oid, 'INSERT') FROM pg_class WHERE relname = '{name}' AND relispartition"));
        }

        Assert.Equal(0, await ArchiveMonths.EnsureAsync(archiver, clock.Now, options.Premake, default));
    }

    [EngineFact]
    public async Task The_archive_verb_killed_20_times_mid_pass_on_observed_progress_and_rerun_ends_exactly()
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_kill");
        await ArchiveData.SeedTreesAsync(db, users: 1000, rootsPerUser: 12, DateTimeOffset.UtcNow);
        await using var connection = await Sql.OpenAsync(db);
        var before = await ArchiveData.ChecksumAsync(db);
        var random = new Random(20261125);
        const string archived = "SELECT count(*) FROM todos_archived";
        var (kills, finishedFirst) = (0, 0);
        while (kills < 20)
        {
            // Killed once todos_archived is seen to have grown by a random 1 to 75 rows (a batch of 25 finished trees
            // or a few) since the pass started: mid-work on a fast machine and a slow one alike, where a kill after a
            // fixed time could come before the first batch or after the last.
            var start = await Sql.ScalarAsync<long>(connection, archived);
            var rows = random.Next(1, 3 * 25 + 1);
            using var process = StartArchive(db, "--batch-size", "25");
            var moved = await Progress.UntilAsync<long>(connection, archived, now => now >= start + rows, process,
                $"archive pass {kills + finishedFirst + 1}: {rows} rows archived after {start}");
            if (moved)
            {
                process.Kill(entireProcessTree: true);
            }

            await process.WaitForExitAsync();
            var finished = process.ExitCode == 0; // it ran to its end before the kill landed (or found too little to move)
            Assert.True(moved || finished, $"the archive pass exited {process.ExitCode} on its own");
            if (!finished)
            {
                kills++;
            }

            Assert.Equal(before, await ArchiveData.ChecksumAsync(db));
            await ArchiveData.AssertConsistentAsync(db);
            if (finished)
            {
                // A pass that ran to its end left nothing to interrupt: give the next ones new trees to move, so the
                // count of kills does not depend on how fast this machine archives.
                finishedFirst++;
                Assert.True(finishedFirst <= 20, $"{finishedFirst} passes ended before they were seen to move {rows} rows ({kills} kills)");
                await ArchiveData.SeedTreesAsync(db, users: 300, rootsPerUser: 12, DateTimeOffset.UtcNow);
                before = await ArchiveData.ChecksumAsync(db);
            }
        }

        var (exitCode, output) = await OperatorCli.RunAsync(["archive", "--once", "--batch-size", "500"], db);
        Assert.True(exitCode == 0, output);
        Assert.Contains("archive: moved ", output);
        Assert.Equal(before, await ArchiveData.ChecksumAsync(db));
        await ArchiveData.AssertConsistentAsync(db, DateTimeOffset.UtcNow.AddDays(-30));
        // Every qualifying tree moved: no finished root older than the cut-off whose whole tree qualifies is left.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection,
            """
            SELECT count(*) FROM todos_active r
             WHERE r.parent_todo_id IS NULL AND r.status IN ('done', 'cancelled') AND r.completed_at < now() - interval '30 days' - interval '5 minutes'
               AND NOT EXISTS (SELECT FROM todos_active c WHERE c.user_id = r.user_id AND c.parent_todo_id = r.id
                                 AND (c.status NOT IN ('done', 'cancelled') OR c.completed_at >= now() - interval '30 days' - interval '5 minutes'
                                      OR EXISTS (SELECT FROM todos_active g WHERE g.user_id = c.user_id AND g.parent_todo_id = c.id
                                                   AND (g.status NOT IN ('done', 'cancelled') OR g.completed_at >= now() - interval '30 days' - interval '5 minutes'))))
            """));
        Assert.True(await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM audit_log WHERE action = 'archive.pass'") >= 1);
    }

    [EngineTheory]
    [InlineData(new[] { "archive", "--once", "--batch-size", "0" }, "BatchSize")]
    [InlineData(new[] { "archive", "--once", "--older-than", "-5d" }, "OlderThan")]
    [InlineData(new[] { "archive", "--once", "--older-than", "soon" }, "--older-than")]
    [InlineData(new[] { "archive", "--once", "--parallel", "0" }, "Parallel")]
    [InlineData(new[] { "archive" }, "--once")]
    public async Task Bad_options_exit_2_with_a_message_naming_them_and_touch_nothing(string[] args, string named)
    {
        var db = await server.FreshMigratedDatabaseAsync("archive_bad");
        var user = Guid.CreateVersion7();
        await using var connection = await Sql.OpenAsync(db);
        await Insert(connection, user, null, "done", DateTimeOffset.UtcNow.AddDays(-400));

        var (exitCode, output) = await OperatorCli.RunAsync(args, db);

        Assert.True(exitCode == 2, $"exit {exitCode}: {output}");
        Assert.Contains(named, output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_archived"));
    }

    [EngineFact]
    public async Task An_unknown_verb_is_refused_with_a_message()
    {
        var (exitCode, output) = await OperatorCli.RunAsync(["archvie", "--once"], server.ConnectionString());
        Assert.NotEqual(0, exitCode);
        Assert.Contains("archvie", output);
    }

    private static Process StartArchive(string connectionString, params string[] extra)
    {
        var start = new ProcessStartInfo("dotnet", [RepositoryPaths.ProjectOutput("TodoScale.Archiver", "TodoScale.Archiver.dll"), "archive", "--once", .. extra])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.Environment["ConnectionStrings__todos"] = connectionString;
        start.Environment["Archive__PauseBetweenBatches"] = "00:00:00";
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task<Guid> Insert(NpgsqlConnection connection, Guid user, Guid? parent, string status, DateTimeOffset? completedAt)
    {
        var id = Guid.CreateVersion7();
        await using var command = new NpgsqlCommand(
            "INSERT INTO todos_active (id, user_id, parent_todo_id, title, status, completed_at) VALUES ($1, $2, $3, 'todo', $4, $5)", connection);
        command.Parameters.AddWithValue(id);
        command.Parameters.AddWithValue(user);
        command.Parameters.AddWithValue(parent is null ? DBNull.Value : parent.Value);
        command.Parameters.AddWithValue(status);
        command.Parameters.AddWithValue(completedAt is null ? DBNull.Value : completedAt.Value);
        await command.ExecuteNonQueryAsync();
        return id;
    }

    /// <summary>
    /// Until stopped: adds subtasks under random finished old roots (some trees then no longer qualify, some races
    /// reach the cascade guard), reopens finished todos, completes open ones with an old completed_at (they become
    /// archivable mid-pass), and adds new roots. Counts every committed change in <paramref name="committed"/>; records every inserted id.
    /// </summary>
    private static async Task WriteConcurrentlyAsync(string db, ConcurrentDictionary<Guid, bool> inserted, StrongBox<int> committed, CancellationToken stop)
    {
        await using var connection = await Sql.OpenAsync(db);
        var random = new Random(7);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                switch (random.Next(4))
                {
                    case 0:
                    {
                        // As a user adds a subtask: the parent as read a moment ago, then the row (one statement
                        // each: on Citus an INSERT .. SELECT across users goes through the coordinator).
                        var id = Guid.CreateVersion7();
                        await using var pick = new NpgsqlCommand(
                            "SELECT user_id, id FROM todos_active WHERE parent_todo_id IS NULL AND status = 'done' ORDER BY random() LIMIT 1", connection);
                        (Guid User, Guid Id)? parent = null;
                        await using (var reader = await pick.ExecuteReaderAsync())
                        {
                            if (await reader.ReadAsync())
                            {
                                parent = (reader.GetGuid(0), reader.GetGuid(1));
                            }
                        }

                        if (parent is { } p)
                        {
                            await using var command = new NpgsqlCommand(
                                "INSERT INTO todos_active (id, user_id, parent_todo_id, title, status) VALUES ($1, $2, $3, 'late subtask', 'todo')", connection);
                            command.Parameters.AddWithValue(id);
                            command.Parameters.AddWithValue(p.User);
                            command.Parameters.AddWithValue(p.Id);
                            await command.ExecuteNonQueryAsync();
                            inserted[id] = true;
                            Interlocked.Increment(ref committed.Value);
                        }

                        break;
                    }

                    case 1:
                        Interlocked.Add(ref committed.Value, await ExecuteAsync(connection,
                            "UPDATE todos_active SET status = 'todo', completed_at = NULL WHERE id = (SELECT id FROM todos_active WHERE status = 'done' ORDER BY random() LIMIT 1)"));
                        break;
                    case 2:
                        Interlocked.Add(ref committed.Value, await ExecuteAsync(connection,
                            "UPDATE todos_active SET status = 'done', completed_at = now() - interval '200 days' WHERE id = (SELECT id FROM todos_active WHERE status <> 'done' ORDER BY random() LIMIT 1)"));
                        break;
                    default:
                    {
                        var id = Guid.CreateVersion7();
                        await using var command = new NpgsqlCommand(
                            "INSERT INTO todos_active (id, user_id, title, status, completed_at) VALUES ($1, $2, 'new root', 'done', now() - interval '100 days')", connection);
                        command.Parameters.AddWithValue(id);
                        command.Parameters.AddWithValue(Guid.CreateVersion7());
                        await command.ExecuteNonQueryAsync();
                        inserted[id] = true;
                        Interlocked.Increment(ref committed.Value);
                        break;
                    }
                }
            }
            catch (PostgresException e) when (e.SqlState is PostgresErrorCodes.ForeignKeyViolation or PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected)
            {
                // The parent was archived a moment ago: the write fails cleanly, as it would for a user.
            }
        }
    }

    private static async Task<int> ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return await command.ExecuteNonQueryAsync();
    }
}

[Collection(PostgresCollection.Name)]
public sealed class ArchiverTestsOnPostgres(PostgresServer server, ITestOutputHelper log) : ArchiverTests(server, log);

[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class ArchiverTestsOnCitus(CitusCluster server, ITestOutputHelper log) : ArchiverTests(server, log);
