using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Partitions;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.ServiceDefaults;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Partitions;

/// <summary>
/// `partitions split --to N` run as an operator runs it (the CLI as a process) on a real PostgreSQL while the API's
/// role writes and reads: 16 -> 32 -> 64, and a split killed ten times and resumed.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PartitionSplitTests(PostgresServer server, ITestOutputHelper log)
{
    [Trait(Traits.Needs, Traits.ServerTimers)]
    [Fact]
    public async Task Splits_16_to_32_to_64_under_live_writes_and_reads_and_keeps_every_row_as_written()
    {
        var db = await server.FreshMigratedDatabaseAsync("split_flow");
        var workload = await Workload.SeedAsync(db, heavyTodos: 3_000, lightUsers: 1_500, todosPerLightUser: 5);
        await SplitShadow.CreateAsync(db);
        var traffic = new SplitTraffic(db, workload.LightUsers.Take(100).ToList());
        using var stop = new CancellationTokenSource();
        var running = traffic.RunAsync(writers: 2, stop.Token);
        // The traffic is under way (seen on its counters, not slept on) before the first split starts.
        await Progress.UntilAsync(() => running.IsCompleted || (traffic.Writes >= 20 && traffic.Reads >= 5),
            () => $"the traffic made {traffic.Writes} writes, {traffic.Reads} reads");
        Assert.False(running.IsCompleted, $"the traffic stopped before the splits: {running.Exception?.GetBaseException().Message}");

        foreach (var to in new[] { 32, 64 })
        {
            var (writes, reads) = (traffic.Writes, traffic.Reads);
            var split = await OperatorCli.RunAsync(["partitions", "split", "--to", $"{to}", "--batch-size", "500"], db);
            var during = (Writes: traffic.Writes - writes, Reads: traffic.Reads - reads);
            log.WriteLine($"{DateTimeOffset.UtcNow:HH:mm:ss.fff} {split.Output.Trim().Split('\n')[^1]} ({during.Writes} writes, {during.Reads} reads during the split)");
            Assert.True(split.ExitCode == 0, split.Output);
            // Writes and reads went on while the split ran (counts, not rates: whatever this machine's speed), so
            // the split was done under live traffic rather than beside it.
            Assert.True(during.Writes > 0 && during.Reads > 0, $"during the split to {to}: {during.Writes} writes, {during.Reads} reads");
            Assert.Contains($"{to} old partition(s) split to modulus {to}", split.Output);
            Assert.Equal(to, (await PartitionRowsGaugeAsync(db, "todos_active")).Count);
            Assert.Equal(to, (await PartitionRowsGaugeAsync(db, "ai_interactions")).Count);
            var status = await OperatorCli.RunAsync(["partitions", "status"], db);
            Assert.True(status.ExitCode == 0, status.Output);
            Assert.Contains($"todos_active: {to} partitions", status.Output);
            Assert.Contains($"re-split: to {to} finished", status.Output);
            var again = await OperatorCli.RunAsync(["partitions", "split", "--to", $"{to}"], db);
            Assert.True(again.ExitCode == 0 && again.Output.Contains($"already have {to} partitions", StringComparison.Ordinal), again.Output);
        }

        // A few more writes land on the 64-partition layout (seen) before the traffic stops.
        var afterSplits = traffic.Writes;
        await Progress.UntilAsync(() => running.IsCompleted || traffic.Writes >= afterSplits + 20,
            () => $"the traffic made {traffic.Writes - afterSplits} writes after the last split");
        await stop.CancelAsync();
        await running;
        log.WriteLine($"traffic: {traffic.Writes} writes (longest {traffic.LongestWrite.TotalMilliseconds:0} ms), {traffic.Reads} reads of frozen users; slowest: {string.Join("; ", traffic.Slowest.Select(w => $"{w.Elapsed.TotalMilliseconds:0} ms at {w.At:HH:mm:ss.fff} {w.Sql}"))}");
        Assert.True(traffic.Failures.Count == 0, string.Join("\n", traffic.Failures.Take(5)));
        Assert.True(traffic.Writes >= afterSplits + 20, $"{traffic.Writes - afterSplits} writes after the last split");

        foreach (var (table, shadow) in new[] { ("todos_active", "shadow_todos"), ("ai_interactions", "shadow_ai") })
        {
            var expected = await SplitShadow.ChecksumAsync(db, shadow);
            log.WriteLine($"{table}: {expected}");
            Assert.Equal(expected, await SplitShadow.ChecksumAsync(db, table));
        }

        await AssertSixtyFourCompletePartitionsAsync(db);
    }

    [Trait(Traits.Needs, Traits.ServerTimers)]
    [Fact]
    public async Task A_split_killed_10_times_resumes_and_finishes_exactly_and_refuses_another_modulus_meanwhile()
    {
        var db = await server.FreshMigratedDatabaseAsync("split_kill");
        var workload = await Workload.SeedAsync(db, heavyTodos: 3_000, lightUsers: 1_500, todosPerLightUser: 5);
        await SplitShadow.CreateAsync(db);
        var traffic = new SplitTraffic(db, workload.LightUsers.Take(50).ToList());
        using var stop = new CancellationTokenSource();
        var running = traffic.RunAsync(writers: 1, stop.Token);
        await using var connection = await Sql.OpenAsync(db);
        var random = new Random(20261126);
        var steps = new List<string>();
        const int kills = 10;
        for (var killed = 0; killed < kills;)
        {
            // Killed once partition_split is seen to change since the run started (a batch copied, a step taken, a
            // partition begun), then after 0 to 3 more changes: every kill lands mid-work, on a fast machine and a
            // slow one, where a kill after a fixed time could come before the first change or after the last.
            var output = new System.Text.StringBuilder();
            var seen = await Sql.ScalarAsync<string>(connection, SplitState);
            var further = random.Next(0, 4);
            var changes = 0;
            using var process = StartSplit(db, slow: true, output);
            var changed = await Progress.UntilAsync<string>(connection, SplitState, now =>
            {
                if (now != seen)
                {
                    (seen, changes) = (now, changes + 1);
                }

                return changes > further;
            }, process, $"split run {killed + 1}: {further + 1} change(s) of partition_split");
            if (changed)
            {
                process.Kill(entireProcessTree: true);
            }

            await process.WaitForExitAsync();
            process.WaitForExit(); // the output's last lines
            if (!changed || process.ExitCode == 0) // it ended on its own before the kill landed
            {
                Assert.True(process.ExitCode == 0, $"split exited {process.ExitCode}: {output}");
                Assert.Fail($"killed only {killed} times: the split finished first");
            }

            killed++;
            steps.Add(await Sql.ScalarAsync<string>(connection,
                "SELECT coalesce((SELECT table_name || ' p' || remainder || ' ' || step || ' ' || copied FROM partition_split ORDER BY updated_at DESC LIMIT 1), 'nothing yet')"));
            if (killed == 3)
            {
                var other = await OperatorCli.RunAsync(["partitions", "split", "--to", "64"], db);
                Assert.True(other.ExitCode == 2, other.Output);
                Assert.Contains("a split to 32 partitions is in progress", other.Output);
                var status = await OperatorCli.RunAsync(["partitions", "status"], db);
                Assert.True(status.ExitCode == 0, status.Output);
                Assert.Contains("re-split: to 32 in progress", status.Output);
                await AssertPartitionHashFollowsTheLayoutAsync(db, workload.LightUsers.Take(200));
            }
        }

        var finalOutput = new System.Text.StringBuilder();
        using (var final = StartSplit(db, slow: false, finalOutput))
        {
            await Progress.ExitAsync(final, "the split run to the end", TimeSpan.FromMinutes(10));
            Assert.True(final.ExitCode == 0, $"split exited {final.ExitCode}: {finalOutput}");
        }

        var last = finalOutput.ToString();
        log.WriteLine($"killed {kills} times, at: {string.Join("; ", steps)}");
        log.WriteLine(last.Trim().Split('\n')[^1]);
        Assert.True(steps.Distinct().Count() >= 8, $"the kills did not land at different points: {string.Join("; ", steps)}");
        await stop.CancelAsync();
        await running;
        Assert.True(traffic.Failures.Count == 0, string.Join("\n", traffic.Failures.Take(5)));
        Assert.Equal(await SplitShadow.ChecksumAsync(db, "shadow_todos"), await SplitShadow.ChecksumAsync(db, "todos_active"));
        Assert.Equal(await SplitShadow.ChecksumAsync(db, "shadow_ai"), await SplitShadow.ChecksumAsync(db, "ai_interactions"));
        Assert.Equal(32L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM partition_split WHERE new_modulus = 32 AND step = 'done'"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_class WHERE relname ~ '_(next|old)_p[0-9]+$'"));
    }

    [Theory]
    [InlineData("24", "must be a power of two")]
    [InlineData("512", "must be a power of two from 2 to 256")]
    [InlineData("8", "todos_active has 16 partitions, and 16 does not divide 8")]
    [InlineData("legacy", "a legacy migration is in progress (phase started)")]
    public async Task Refuses_what_it_cannot_do_with_a_clear_message_and_changes_nothing(string to, string message)
    {
        var db = await server.FreshMigratedDatabaseAsync("split_refused");
        if (to == "legacy")
        {
            await Sql.ExecuteAsync(db, "INSERT INTO legacy_migration (phase) VALUES ('started')");
            to = "32";
        }

        var result = await OperatorCli.RunAsync(["partitions", "split", "--to", to], db);
        Assert.True(result.ExitCode == 2, result.Output);
        Assert.Contains(message, result.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM partition_split"));
        Assert.Equal(16, (await PartitionRowsGaugeAsync(db, "todos_active")).Count);
    }

    /// <summary>Mid-split, with children of moduli 16 and 32 side by side: PartitionHash names the partition PostgreSQL stores each user's rows in.</summary>
    private async Task AssertPartitionHashFollowsTheLayoutAsync(string db, IEnumerable<Guid> users)
    {
        await using var connection = await Sql.OpenAsync(db);
        var layout = (await PartitionSplit.LayoutAsync(connection, "todos_active", CancellationToken.None)).Values.ToHashSet();
        log.WriteLine($"mid-split layout: {layout.Count(b => b.Modulus == 16)} partitions of modulus 16, {layout.Count(b => b.Modulus == 32)} of 32");
        foreach (var user in users)
        {
            var stored = await Sql.ColumnAsync<string>(connection, $"SELECT DISTINCT tableoid::regclass::text FROM todos_active WHERE user_id = '{user}'");
            Assert.Equal([PartitionSplit.Name("todos_active", TodoScale.Data.Partitioning.PartitionHash.PartitionIndex(user, layout))], stored);
        }
    }

    /// <summary>
    /// Every old partition's split as partition_split records it, in one string: it changes with each batch copied
    /// (copied grows) and each step taken, and only then (a killed run's uncommitted work is not in it).
    /// </summary>
    private const string SplitState =
        "SELECT count(*) || ': ' || coalesce(string_agg(table_name || ' ' || old_modulus || ' p' || remainder || ' ' || step || ' ' || copied, ', ' ORDER BY table_name, old_modulus, remainder), '') FROM partition_split";

    private static Process StartSplit(string db, bool slow, System.Text.StringBuilder output) =>
        OperatorCli.Start(["partitions", "split", "--to", "32", "--batch-size", slow ? "50" : "2000"], db, output,
            ("Split__PauseBetweenBatches", slow ? "00:00:00.050" : "00:00:00"));

    /// <summary>
    /// The archiver's partition gauges as its collector publishes them: a fresh snapshot of the catalog handed to
    /// <see cref="ArchiveMetrics"/>, read back through a MeterListener. Partition label -> rows.
    /// </summary>
    private static async Task<Dictionary<string, long>> PartitionRowsGaugeAsync(string db, string table)
    {
        await using var dataSource = ArchiverDataSource.Create(db, Roles.Archiver);
        var snapshot = await PartitionStats.ReadAsync(dataSource, new ArchiveOptions(), DateTimeOffset.UtcNow, exact: true, CancellationToken.None);
        await using var services = new ServiceCollection().AddMetrics().BuildServiceProvider();
        var metrics = new ArchiveMetrics(services.GetRequiredService<IMeterFactory>());
        metrics.Observe(snapshot, []);
        var rows = new Dictionary<string, long>();
        var sizes = 0;
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == TodoScaleMeters.Archiver && instrument.Name is ArchiveMetrics.PartitionRows or ArchiveMetrics.PartitionSize)
            {
                l.EnableMeasurementEvents(instrument);
            }
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) =>
        {
            var tagList = tags.ToArray();
            if (!tagList.Any(t => t.Key == ArchiveMetrics.Tags.Table && Equals(t.Value, table)))
            {
                return;
            }

            if (instrument.Name == ArchiveMetrics.PartitionRows)
            {
                rows[(string)tagList.Single(t => t.Key == ArchiveMetrics.Tags.Partition).Value!] = value;
            }
            else
            {
                sizes++;
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(rows.Count, sizes);
        return rows;
    }

    private static async Task AssertSixtyFourCompletePartitionsAsync(string db)
    {
        foreach (var table in PartitionSplit.Tables)
        {
            var bounds = await Sql.ColumnAsync<string>(db, $"""
                SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid) || ' rls ' || c.relrowsecurity || c.relforcerowsecurity
                       || ' policy ' || (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)
                       || ' indexes ' || (SELECT count(*) FROM pg_index x WHERE x.indrelid = c.oid AND x.indisvalid)
                  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = '{table}'::regclass ORDER BY c.relname
                """);
            var indexes = await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM pg_index WHERE indrelid = '{table}'::regclass");
            Assert.Equal(Enumerable.Range(0, 64).Select(r => $"{table}_p{r:00} FOR VALUES WITH (modulus 64, remainder {r}) rls truetrue policy 1 indexes {indexes}"), bounds);
        }

        // Each todos_active partition: its own validated subtask key and the parent's project key (adopted).
        var keys = await Sql.ColumnAsync<string>(db, """
            SELECT c.relname || ' ' || string_agg(k.conname || CASE WHEN k.convalidated THEN '' ELSE ' NOT VALID' END, ', ' ORDER BY k.conname)
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_constraint k ON k.conrelid = c.oid AND k.contype = 'f'
             WHERE i.inhparent = 'todos_active'::regclass GROUP BY c.relname ORDER BY c.relname
            """);
        Assert.Equal(Enumerable.Range(0, 64).Select(r => $"todos_active_p{r:00} todos_active_p{r:00}_parent_fkey, todos_active_project_fkey"), keys);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db,
            "SELECT count(*) FROM pg_class WHERE relname ~ '_(next|old)_p[0-9]+$' OR relname ~ '^todos_active_p[0-9]+_.*next'"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_proc WHERE proname LIKE 'todoscale\\_split\\_%'"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, """
            SELECT count(*) FROM todos_active s
             WHERE s.parent_todo_id IS NOT NULL
               AND NOT EXISTS (SELECT FROM todos_active p WHERE p.user_id = s.user_id AND p.id = s.parent_todo_id AND p.depth = s.depth - 1)
            """));

        // The tenant wall on a new partition, addressed directly by the API's role: another user's rows are not there.
        await using var app = await Sql.OpenAsync(Roles.As(db, Roles.App));
        await using var transaction = await app.BeginTransactionAsync();
        await Sql.ExecuteAsync(app, $"SET LOCAL app.user_id = '{Guid.CreateVersion7()}'", transaction);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(app, "SELECT count(*) FROM todos_active_p40", transaction));
        Assert.True(await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active_p40") > 0);
    }
}
