using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Stack;
using TodoScale.Bench.Workloads;
using TodoScale.Testing;

namespace TodoScale.Bench;

/// <summary>One benchmark run: start the stack, generate, run workloads 1-6 (each an A/B in the same run), report.</summary>
public sealed class BenchRun(BenchScale scale, int seed, string output, string command)
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();

    public async Task<string> RunAsync(CancellationToken cancellationToken)
    {
        var results = new BenchResults { Scale = scale, Command = command, Seed = seed };
        var work = Directory.CreateTempSubdirectory("todoscale-bench-").FullName;
        await using var stack = await StartStackAsync();
        try
        {
            await using var db = stack.OpenPrimary();
            await ReadServerAsync(db, results, cancellationToken);
            var modulus = (int)await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_active'::regclass", cancellationToken);
            var now = DateTimeOffset.UtcNow;
            await Baselines.ExecuteAsync(db, """
                SELECT todoscale_ensure_archive_months('todos_archived', (now() - interval '400 days')::date, 16);
                SELECT todoscale_ensure_archive_months('ai_interactions_archived', (now() - interval '400 days')::date, 16);
                """, cancellationToken);

            // Generate, measuring the scale curve's points on the way.
            var generator = new Generator(scale, seed, now);
            var pages = new PageQueries(stack, modulus);
            var loaders = Enumerable.Range(0, 4).Select(_ => stack.OpenPrimary("bench-load")).ToArray();
            var loaded = new List<BenchUser>();
            long active = 0, archived = 0, projects = 0, ai = 0;
            var loadTime = TimeSpan.Zero;
            foreach (var point in scale.CurvePoints.Append(long.MaxValue))
            {
                var (users, counts) = await generator.LoadAsync(loaders, point, active, cancellationToken);
                loaded.AddRange(users);
                (active, archived, projects, ai) = (active + counts.Active, archived + counts.Archived, projects + counts.Projects, ai + counts.AiInteractions);
                loadTime += counts.Elapsed;
                Say($"loaded {active:N0} active + {archived:N0} archived todos ({(active + archived + projects + ai) / loadTime.TotalSeconds:N0} rows/s so far)");
                foreach (var table in new[] { "todos_active", "todos_archived", "projects", "ai_interactions" })
                {
                    await Baselines.ExecuteAsync(db, $"VACUUM ANALYZE {table}", cancellationToken);
                }

                var typicalSoFar = Typical(loaded);
                await pages.RunAsync(PageQueries.TodoScale, typicalSoFar, scale.Warmup, cancellationToken);
                var curve = await pages.RunAsync(PageQueries.TodoScale, typicalSoFar, scale.QueryRun, cancellationToken);
                results.Curve.Add((active, curve.P50, curve.P99));
                Say($"scale curve: {active:N0} rows, p50 {curve.P50:0.000} ms, p99 {curve.P99:0.000} ms");
                if (generator.Done)
                {
                    break;
                }
            }

            foreach (var loader in loaders)
            {
                await loader.DisposeAsync();
            }

            results.Generated = new Generated(active, archived, projects, ai, loadTime);
            results.LoadedUsers = loaded.Count;

            Say("building the baselines (unpartitioned copy with the same indexes; the original one big table)");
            results.BaselinesBuilt = await Baselines.CreateAsync(db, cancellationToken);
            Say($"baselines built in {results.BaselinesBuilt.TotalSeconds:0.0} s");

            // 1. The page at the database.
            var typical = Typical(loaded);
            var heavy = loaded.Where(u => u.Rank <= Math.Max(1, scale.Users / 100)).Select(u => u.Id).ToList();
            results.HeavyUsers = heavy.Count;
            results.HeaviestOpenTodos = await Baselines.ScalarAsync<long>(db,
                "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM todos_active WHERE status IN ('todo', 'in_progress') GROUP BY user_id) s", cancellationToken);
            PageVariant[] variants = [PageQueries.TodoScale, PageQueries.TodoScaleReplanned, PageQueries.TodoScaleChild, PageQueries.Flat];
            Say("workload 1: the page at the database, typical users");
            results.PageTypical.AddRange(await pages.CompareAsync(variants, typical, scale.QueryRun, scale.Warmup, rounds: 2, cancellationToken));
            Say("workload 1: the page at the database, the heaviest 1%");
            results.PageHeavy.AddRange(await pages.CompareAsync(variants, heavy, scale.QueryRun, scale.Warmup, rounds: 2, cancellationToken));
            Say("workload 1: the original table (a sequential scan per page)");
            results.BeforeTypical = await pages.RunAsync(PageQueries.Before, typical, scale.QueryRun, cancellationToken, minimumPerClient: 2);
            foreach (var (label, user) in new[] { ("typical user", typical[0]), ("heaviest user", loaded.MinBy(u => u.Rank)!.Id) })
            {
                foreach (var mode in new[] { "auto", "force_generic_plan", "force_custom_plan" })
                {
                    results.Plans.Add(($"{label}, todos_active, plan_cache_mode={mode}", await pages.PlanAsync("todos_active", user, mode, cancellationToken)));
                }

                results.Plans.Add(($"{label}, unpartitioned, plan_cache_mode=force_generic_plan", await pages.PlanAsync(Baselines.Flat, user, "force_generic_plan", cancellationToken)));
            }

            foreach (var m in results.PageTypical.Concat(results.PageHeavy).Append(results.BeforeTypical))
            {
                Say($"  {m.Variant}: p50 {m.P50:0.000} ms, p99 {m.P99:0.000} ms, {m.PerSecond:N0}/s");
            }

            // 2. Through the API, and 6. the meters' cost (uncached runs, alternated).
            var http = new HttpLoad(stack, work);
            var httpUsers = typical.Take(2000).ToList();
            Say("workload 2: raw prepared Npgsql loop, 32 connections");
            results.RawLoop = await pages.RunAsync(PageQueries.TodoScale with { Name = "Raw prepared Npgsql loop (ceiling)", Clients = 32 }, httpUsers, scale.HttpRun, cancellationToken);

            // The peer (what a team would write without TodoScale, on the unpartitioned copy) in the same rounds, so
            // the machine's drift between runs falls on both alike: on two shared cores one run of either moves by a
            // third from one run to the next. Each figure is the run of median throughput among its three.
            Say("workload 2: TodoScale's API uncached (meters on and off) and the peer API (ASP.NET Core + EF Core over the unpartitioned table, no replica or cache), 32 connections, 3 rounds");
            await using (var peer = await PeerApi.StartAsync(stack, Baselines.Flat, cancellationToken))
            {
                for (var round = 0; round < 3; round++)
                {
                    foreach (var meters in round % 2 == 0 ? new[] { true, false } : [false, true])
                    {
                        await stack.ConfigureApiAsync(cache: false, meters: meters);
                        await http.WrkAsync("warm-up", httpUsers, scale.ApiWarmup, 32, cancellationToken, carrySessions: true);
                        var run = await http.WrkAsync($"API, uncached (meters {(meters ? "on" : "off")})", httpUsers, scale.HttpRun, 32, cancellationToken, carrySessions: true);
                        (meters ? results.MetersOn : results.MetersOff).Add(run);
                        Say($"  {run.Variant}: {run.PerSecond:N0}/s, p99 {run.P99Ms:0.00} ms, errors {run.Errors + run.Non2xx}");
                    }

                    await http.WrkAsync("warm-up", httpUsers, scale.ApiWarmup, 32, cancellationToken, target: peer.Address, carrySessions: true);
                    var peerRun = await http.WrkAsync("Peer API (EF Core, one unpartitioned table, no replica or cache)", httpUsers, scale.HttpRun, 32, cancellationToken, target: peer.Address, carrySessions: true);
                    results.PeerRuns.Add(peerRun);
                    Say($"  {peerRun.Variant}: {peerRun.PerSecond:N0}/s, p99 {peerRun.P99Ms:0.00} ms, errors {peerRun.Errors + peerRun.Non2xx}");
                }
            }

            results.ApiUncached = MedianRun(results.MetersOn) with { Variant = "API, uncached" };
            results.PeerApi = MedianRun(results.PeerRuns);

            await stack.ConfigureApiAsync(cache: true, meters: true);
            var cachedUsers = typical.Take(200).ToList();
            await http.WrkAsync("warm-up", cachedUsers, scale.ApiWarmup, 32, cancellationToken, carrySessions: true);
            results.ApiCached = await http.WrkAsync("API, cached", cachedUsers, scale.HttpRun, 32, cancellationToken, carrySessions: true);
            Say($"  {results.ApiCached.Variant}: {results.ApiCached.PerSecond:N0}/s, p99 {results.ApiCached.P99Ms:0.00} ms");

            // 3. Archival, with the API's latency idle and during the pass.
            await stack.ConfigureApiAsync(cache: false, meters: true);
            await http.WrkAsync("warm-up", httpUsers, scale.ApiWarmup, 32, cancellationToken);
            // The finished trees still active were completed 0-60 days ago (older ones were loaded into the archive).
            // The rows/s figure is a pass on its own over those finished 45-60 days ago; the API's p99 is then measured
            // idle and during a second pass, with the default 30-day cut-off, over the rest: on two shared cores a pass
            // under load measures how the cores are shared as much as the archiver.
            Say("workload 3: an archive pass on its own (--older-than 45d)");
            var mark = await BareMove.MarkAsync(db, cancellationToken);
            results.Archive = await ArchivePass.RunAsync(stack.PrimaryConnectionString, "45d", cancellationToken);
            Say($"  {results.Archive.SummaryLine}");
            // The same rows put back, then moved by a bare set-based move: the archiver's defaults (Archive:BatchSize
            // 5,000; Archive:Parallel one worker per core).
            Say("workload 3: the same rows by a bare set-based move (DELETE .. RETURNING into INSERT, no subtree rule, no triggers)");
            results.BareMove = await BareMove.RunAsync(stack, mark, results.Archive.Rows, 5_000, Environment.ProcessorCount, cancellationToken);
            Say($"  {results.BareMove.Rows:N0} todos in {results.BareMove.Seconds:0.0} s: {results.BareMove.RowsPerSecond:N0}/s ({results.BareMove.Batches} batches, {results.BareMove.Workers} workers)");
            Say("workload 3: the archiver again, on the same rows put back the same way");
            results.BareMove = await BareMove.ArchiverAgainAsync(stack, mark.Since, results.BareMove, "45d", cancellationToken);
            Say($"  {results.BareMove.Again!.SummaryLine}");
            Say("workload 3: API idle, then during an archive pass (default cut-off)");
            using (var idle = new CancellationTokenSource(scale.HttpRun))
            {
                results.ApiIdle = await http.UntilAsync("idle", httpUsers, 4, idle.Token);
            }

            using (var during = new CancellationTokenSource())
            {
                var load = http.UntilAsync("during the archive pass", httpUsers, 4, during.Token);
                try
                {
                    results.ArchiveUnderLoad = await ArchivePass.RunAsync(stack.PrimaryConnectionString, null, cancellationToken);
                }
                finally
                {
                    await during.CancelAsync();
                    results.ApiDuringArchive = await load;
                }
            }

            Say($"  {results.ArchiveUnderLoad.SummaryLine}");

            // 5. One big table against TodoScale, after the pass.
            Say("workload 5: sizes, backup and REINDEX against the one big table");
            results.BigTable = await OneBigTable.RunAsync(db, stack.PrimaryConnectionString, work, cancellationToken);

            // 7. Which indexes the run used: the operators' report, as an SRE reads it.
            Say("index usage: partitions status --indexes");
            var (exit, indexes) = await OperatorCli.RunAsync(["partitions", "status", "--indexes", "--unused-after", "0s"], stack.PrimaryConnectionString);
            results.IndexReport = exit == 0 ? indexes.TrimEnd() : throw new InvalidOperationException($"partitions status --indexes exited {exit}: {indexes}");
            Say($"  {results.IndexReport.Split('\n')[^1]}");

            results.Elapsed = _clock.Elapsed;
            var report = Report.Write(results, output);
            Say($"report: {report}");
            return report;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>
    /// `--workload legacy`: the migration from `todos` on a fresh stack (TodoScale's tables empty, as a migration
    /// starts), written to bench/results/&lt;date&gt;-&lt;scale&gt;-legacy.md.
    /// </summary>
    public Task<string> RunLegacyAsync(CancellationToken cancellationToken) =>
        RunOnFreshStackAsync(stack => LegacyMigrationBench.RunAsync(stack, scale, Say, cancellationToken), (legacy, results) => Report.WriteLegacy(legacy, results, output), cancellationToken);

    /// <summary>`--workload split`: the online re-split 16 -> 32 under write load, written to bench/results/&lt;date&gt;-&lt;scale&gt;-split.md.</summary>
    public Task<string> RunSplitAsync(CancellationToken cancellationToken) =>
        RunOnFreshStackAsync(stack => SplitBench.RunAsync(stack, scale, Say, cancellationToken), (split, results) => Report.WriteSplit(split, results, output), cancellationToken);

    /// <summary>`--workload soak`: 10 minutes of mixed API traffic with an archive pass in the middle, written to bench/results/&lt;date&gt;-&lt;scale&gt;-soak.md.</summary>
    public Task<string> RunSoakAsync(CancellationToken cancellationToken) =>
        RunOnFreshStackAsync(stack => SoakBench.RunAsync(stack, scale, Say, cancellationToken), (soak, results) => Report.WriteSoak(soak, results, output), cancellationToken);

    /// <summary>
    /// `--workload pooler`: the API at 200 clients with its primary connections direct (with and without auto-prepare)
    /// and through PgBouncer, written to bench/results/&lt;date&gt;-&lt;scale&gt;-pooler.md.
    /// </summary>
    public async Task<string> RunPoolerAsync(CancellationToken cancellationToken)
    {
        var work = Directory.CreateTempSubdirectory("todoscale-bench-").FullName;
        try
        {
            return await RunOnFreshStackAsync(stack => PoolerBench.RunAsync(stack, scale, seed, work, Say, cancellationToken),
                (pooler, results) => Report.WritePooler(pooler, results, output), cancellationToken, PoolerBench.AppHostArgs);
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>
    /// `--workload backup`: a full backup of the generated data and a point-in-time restore of it through the CLI,
    /// written to bench/results/&lt;date&gt;-&lt;scale&gt;-backup.md.
    /// </summary>
    public Task<string> RunBackupAsync(CancellationToken cancellationToken) =>
        RunOnFreshStackAsync(stack => BackupBench.RunAsync(stack, scale, seed, Say, cancellationToken),
            (backup, results) => Report.WriteBackup(backup, results, output), cancellationToken, backups: true);

    /// <summary>
    /// `--engine citus`: the page, API and archive workloads on one PostgreSQL and on Citus (coordinator + 2 workers),
    /// same data, one report: bench/results/&lt;date&gt;-&lt;scale&gt;-citus.md.
    /// </summary>
    public async Task<string> RunCitusAsync(CancellationToken cancellationToken)
    {
        var results = new BenchResults { Scale = scale, Command = command, Seed = seed };
        var work = Directory.CreateTempSubdirectory("todoscale-bench-").FullName;
        try
        {
            var citus = await CitusBench.RunAsync(async args =>
            {
                var stack = await StartStackAsync(args);
                if (results.Server.Count == 0)
                {
                    await using var db = stack.OpenPrimary();
                    await ReadServerAsync(db, results, cancellationToken);
                }

                return stack;
            }, scale, seed, work, Say, cancellationToken);
            var report = Report.WriteCitus(citus, results, output);
            Say($"report: {report}");
            return report;
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
    }

    /// <summary>A workload of its own on a fresh stack, with the server's settings in its report.</summary>
    private async Task<string> RunOnFreshStackAsync<T>(
        Func<BenchStack, Task<T>> workload, Func<T, BenchResults, string> write, CancellationToken cancellationToken, IEnumerable<string>? appHostArgs = null, bool backups = false)
    {
        await using var stack = await StartStackAsync(appHostArgs, backups);
        var results = new BenchResults { Scale = scale, Command = command, Seed = seed };
        await using (var db = stack.OpenPrimary())
        {
            await ReadServerAsync(db, results, cancellationToken);
        }

        var report = write(await workload(stack), results);
        Say($"report: {report}");
        return report;
    }

    /// <summary>
    /// The stack a workload runs on, its servers sized for the scale; without WAL archiving and backups (the disk of a
    /// medium run cannot hold the WAL archive besides its data, baselines and replica) unless the workload is the
    /// backups' own.
    /// </summary>
    private Task<BenchStack> StartStackAsync(IEnumerable<string>? appHostArgs = null, bool backups = false)
    {
        Say($"starting the stack (AppHost, process mode; shared_buffers {scale.SharedBuffers} a server{(backups ? "; WAL archived with pgBackRest" : "; no WAL archiving")})");
        appHostArgs = [.. appHostArgs ?? [], $"--Infra:Backups={backups}"];
        return BenchStack.StartAsync(new Dictionary<string, string>
        {
            ["shared_buffers"] = scale.SharedBuffers,
            ["effective_cache_size"] = "16GB",
            ["maintenance_work_mem"] = "1GB",
            // 4GB, not more: with 16GB a medium run's primary and replica each kept 15-20 GB of WAL, which with the
            // data, the baselines and the replica outgrew this machine's 75 GB of free disk.
            ["max_wal_size"] = "4GB",
            ["checkpoint_timeout"] = "30min",
            ["max_connections"] = "300",
        }, appHostArgs);
    }

    /// <summary>A sample of the users below the Zipf head (the top 1% are the heavy ones).</summary>
    private List<Guid> Typical(List<BenchUser> loaded) =>
        [.. loaded.Where(u => u.Rank > Math.Max(1, scale.Users / 100)).Take(5000).Select(u => u.Id)];

    private static async Task ReadServerAsync(NpgsqlConnection db, BenchResults results, CancellationToken cancellationToken)
    {
        results.Server["server_version"] = await Baselines.ScalarAsync<string>(db, "SHOW server_version", cancellationToken);
        foreach (var name in new[] { "shared_buffers", "effective_cache_size", "work_mem", "maintenance_work_mem", "max_wal_size", "checkpoint_timeout", "plan_cache_mode", "jit", "random_page_cost", "synchronous_commit", "max_connections" })
        {
            results.Server[name] = await Baselines.ScalarAsync<string>(db, $"SHOW {name}", cancellationToken);
        }
    }

    private void Say(string message) => Console.WriteLine($"[{_clock.Elapsed:mm\\:ss}] {message}");

    /// <summary>The run of median throughput (of an even count, the lower middle).</summary>
    private static WrkResult MedianRun(List<WrkResult> runs) => runs.OrderBy(w => w.PerSecond).ElementAt((runs.Count - 1) / 2);

}
