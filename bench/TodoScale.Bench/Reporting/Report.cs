using System.Globalization;
using System.Text;
using TodoScale.Bench.Workloads;
using TodoScale.Testing;

namespace TodoScale.Bench.Reporting;

/// <summary>
/// bench/results/&lt;date&gt;-&lt;scale&gt;.md: every target next to its measured figure with met / not met, the
/// tables per workload, the machine and PostgreSQL settings, the exact command, and the plots beside it.
/// </summary>
public static class Report
{
    /// <summary>bench/results/&lt;date&gt;-&lt;scale&gt;-legacy.md: the migration from `todos` (`--workload legacy`).</summary>
    public static string WriteLegacy(LegacyBenchResult l, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        var cost = 1 - l.TriggerOn.PerSecond / l.TriggerOff.PerSecond;
        md.AppendLine(c, $"# TodoScale benchmark: the migration from `todos`, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .AppendLine(c, $"Reproduce: `{r.Command}`. Whole run: {l.Elapsed.TotalMinutes:0.0} min. The operators' CLI run as a process, as an operator runs it, against the stack's primary (durable commits, a streaming replica); every figure from this run, targets reported, never asserted.")
          .AppendLine();
        md.AppendLine("## Targets").AppendLine()
          .AppendLine("| figure | target | measured | |").AppendLine("|---|---|---|---|")
          .AppendLine(c, $"| backfill rows/s, {l.Rows:N0} rows, on its own | >= 150,000 | {l.BackfillRowsPerSecond:N0} | {(l.BackfillRowsPerSecond >= 150_000 ? "met" : "**not met**")} |")
          .AppendLine(c, $"| legacy insert throughput lost to the dual-write trigger | as low as possible (a prototype lost 42%) | {cost:0%} ({l.TriggerOn.PerSecond:N0} vs {l.TriggerOff.PerSecond:N0} per s) | {(cost < 0.42 ? "below the prototype" : "**not below the prototype**")} |")
          .AppendLine(c, $"| longest insert during `legacy start` | (reported) | {l.Start.LongestInsertMs:0.0} ms (longest in the 2 s before: {l.Start.BaselineMaxMs:0.0} ms) | n/a |")
          .AppendLine(c, $"| longest insert during `legacy switch` | (reported) | {l.Switch.LongestInsertMs:0.0} ms (longest in the 2 s before: {l.Switch.BaselineMaxMs:0.0} ms) | n/a |")
          .AppendLine();
        md.AppendLine("## Inserts of the legacy application").AppendLine()
          .AppendLine(c, $"{l.Writers} connections, each inserting one root todo per transaction (a prepared INSERT into `todos`, autocommit), as fast as they can.").AppendLine()
          .AppendLine("| dual-write trigger | inserts | per s | p50 ms | p99 ms | max ms |").AppendLine("|---|---|---|---|---|---|");
        foreach (var run in new[] { l.TriggerOff, l.TriggerOn })
        {
            md.AppendLine(c, $"| {run.Name} | {run.Inserts:N0} in {run.Seconds:0.0} s | {run.PerSecond:N0} | {run.P50Ms:0.00} | {run.P99Ms:0.00} | {run.MaxMs:0.0} |");
        }

        md.AppendLine().AppendLine("## The verbs").AppendLine()
          .AppendLine("| verb | what it printed | wall time | longest insert meanwhile |").AppendLine("|---|---|---|---|");
        foreach (var verb in new[] { l.Start, l.Switch })
        {
            md.AppendLine(c, $"| `{verb.Verb}` (under the insert load) | {verb.Line} | {verb.Seconds:0.0} s | {verb.LongestInsertMs:0.0} ms |");
        }

        md.AppendLine(c, $"| `legacy backfill` (on its own) | {l.BackfillLine} | | |")
          .AppendLine(c, $"| `legacy validate` | {l.ValidateLine} | | |")
          .AppendLine(c, $"| `legacy finalize --force` | {l.FinalizeLine} | | |")
          .AppendLine();
        md.AppendLine("## Data and server").AppendLine()
          .AppendLine(c, $"- `todos` generated with {l.Rows:N0} rows (trees of four: a root, two subtasks, one below the first; 60% finished) in {l.Generated.TotalSeconds:0.0} s; only its primary key, as the original design had it; with the dirt real applications leave, which the migration's rules take: a status in another spelling on one row in ten ('Done', ' done ', 'In Progress'), NULL on one open row in twenty, a NULL priority on one row in 25, a NULL depth on one in 30.")
          .AppendLine(c, $"- {Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory; the stack (primary, replica, Redis, the API, the archiver service), the CLI and the writers share them.")
          .AppendLine();
        AppendSettings(md, r);

        var path = Path.Combine(folder, $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-legacy.md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    /// <summary>The PostgreSQL settings the run read from the server, as a table.</summary>
    private static void AppendSettings(StringBuilder md, BenchResults r)
    {
        md.AppendLine("| setting | value |").AppendLine("|---|---|");
        foreach (var (name, value) in r.Server.OrderBy(p => p.Key, StringComparer.Ordinal))
        {
            md.AppendLine(CultureInfo.InvariantCulture, $"| {name} | {value} |");
        }
    }

    public static string WriteSoak(SoakResult s, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var stem = $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-soak";
        var xs = s.Samples.Select(x => x.Seconds).ToArray();
        var archive = (s.ArchiveFromSeconds, s.ArchiveToSeconds);
        Plots.OverTime(Path.Combine(folder, $"{stem}-p99.png"), "Soak: p99 per window", "milliseconds", [("p99", xs, [.. s.Samples.Select(x => x.P99Ms)])], archive);
        Plots.OverTime(Path.Combine(folder, $"{stem}-errors.png"), "Soak: requests and errors per window", "requests",
            [("requests", xs, [.. s.Samples.Select(x => (double)x.Requests)]), ("errors", xs, [.. s.Samples.Select(x => (double)x.Errors)])], archive);
        Plots.OverTime(Path.Combine(folder, $"{stem}-memory.png"), "Soak: the API's memory", "MiB",
            [("working set", xs, [.. s.Samples.Select(x => x.WorkingSetMb)]), ("GC heap", xs, [.. s.Samples.Select(x => x.GcHeapMb)])], archive);

        var md = new StringBuilder();
        md.AppendLine(c, $"# TodoScale benchmark: a {s.Duration.TotalMinutes:0.#}-minute soak, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .AppendLine(c, $"Reproduce: `{r.Command}`. Whole run: {s.Elapsed.TotalMinutes:0.0} min. {s.Users} users, {s.TargetRate} requests/s open loop (a request starts on schedule whether or not the last one finished) against the API of the process-mode stack; an archive pass over {s.Backlog:N0} finished todos in the middle. Targets reported, never asserted.")
          .AppendLine();
        md.AppendLine("## Targets").AppendLine()
          .AppendLine("| figure | target | measured | |").AppendLine("|---|---|---|---|")
          .AppendLine(c, $"| errors (5xx, failed connections, 4xx other than the API's designed 409) | 0 | {s.Errors:N0} of {s.Requests:N0} | {(s.Errors == 0 ? "met" : "**not met**")} |")
          .AppendLine(c, $"| the API's working set, last third vs middle third (medians) | flat (within 10%) | {s.WorkingSetGrowthPercent:+0.0;-0.0}% | {(Math.Abs(s.WorkingSetGrowthPercent) <= 10 ? "met" : "**not met**")} |")
          .AppendLine(c, $"| the API's GC heap, last third vs middle third (medians) | flat (within 10%) | {s.GcHeapGrowthPercent:+0.0;-0.0}% | {(Math.Abs(s.GcHeapGrowthPercent) <= 10 ? "met" : "**not met**")} |")
          .AppendLine();
        md.AppendLine("## Over time").AppendLine()
          .AppendLine(c, $"![p99]({stem}-p99.png)").AppendLine()
          .AppendLine(c, $"![errors]({stem}-errors.png)").AppendLine()
          .AppendLine(c, $"![memory]({stem}-memory.png)").AppendLine()
          .AppendLine(c, $"The archive pass ran from {s.ArchiveFromSeconds:0} s to {s.ArchiveToSeconds:0} s (shaded).").AppendLine();
        md.AppendLine("## By operation").AppendLine()
          .AppendLine("| operation | requests | errors | p99 ms |").AppendLine("|---|---|---|---|");
        foreach (var (operation, (count, errors, p99)) in s.Operations)
        {
            md.AppendLine(c, $"| {operation} | {count:N0} | {errors:N0} | {p99:0.0} |");
        }

        md.AppendLine().AppendLine("## Windows").AppendLine()
          .AppendLine("| at s | requests | errors | p99 ms | GC heap MiB | working set MiB |").AppendLine("|---|---|---|---|---|---|");
        foreach (var w in s.Samples)
        {
            md.AppendLine(c, $"| {w.Seconds:0} | {w.Requests:N0} | {w.Errors:N0} | {w.P99Ms:0.0} | {w.GcHeapMb:0.0} | {w.WorkingSetMb:0.0} |");
        }

        md.AppendLine().AppendLine(c, $"{Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory; the stack and the load generator share them.").AppendLine();
        AppendSettings(md, r);
        var path = Path.Combine(folder, $"{stem}.md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    public static string WriteBackup(BackupBenchResult b, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var stem = $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-backup";
        var md = new StringBuilder();
        md.AppendLine(c, $"# TodoScale benchmark: a full backup and a point-in-time restore, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .Append(c, $"Reproduce: `{r.Command}`. Whole run: {b.Elapsed.TotalMinutes:0.0} min. {b.Generated.Rows:N0} rows generated ({b.Generated.Active:N0} active, {b.Generated.Archived:N0} archived todos) ")
              .Append("into one process-mode stack (pgBackRest 2.45, zstd, `process-max=2`; WAL archived since the primary's first start), then the operators' CLI as they run it: ")
              .Append("`backup run --type full`; 1,000 rows written, the instant noted, 1,000 more written; `backup restore --to <instant> --into <new folder>`.")
              .AppendLine()
          .AppendLine();
        md.AppendLine("| figure | value |").AppendLine("|---|---|")
          .AppendLine(c, $"| database (`pg_database_size`) | {b.DatabaseBytes / 1048576.0:N0} MiB |")
          .AppendLine(c, $"| full backup, wall time (the CLI, start to exit) | {b.BackupWall.TotalSeconds:0.0} s |")
          .AppendLine(c, $"| repository after it (the backup and the WAL archived so far) | {b.RepositoryBytes / 1048576.0:N0} MiB ({(double)b.RepositoryBytes / b.DatabaseBytes:P0} of the database) |")
          .AppendLine(c, $"| restore to the instant, wall time (WAL switch and archive, restore, start, replay to the target) | {b.RestoreWall.TotalSeconds:0.0} s |")
          .AppendLine(c, $"| rows in the restored copy / at the instant / on the primary now | {b.RestoredRows:N0} / {b.RowsAtTarget:N0} / {b.RowsAfter:N0} ({(b.RestoredRowsMatch ? "exactly the instant's" : "**differs**")}) |")
          .AppendLine()
          .AppendLine("The CLI's own summary lines:").AppendLine()
          .AppendLine("```").AppendLine(b.BackupLine).AppendLine(b.RestoreLine).AppendLine("```").AppendLine();
        md.AppendLine(c, $"{Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory.").AppendLine();
        AppendSettings(md, r);
        var path = Path.Combine(folder, $"{stem}.md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    public static string WritePooler(PoolerBenchResult p, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var stem = $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-pooler";
        var md = new StringBuilder();
        md.AppendLine(c, $"# TodoScale benchmark: the API at {p.Clients} clients, direct and through PgBouncer, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .Append(c, $"Reproduce: `{r.Command}`. Whole run: {p.Elapsed.TotalMinutes:0.0} min. {p.Generated.Rows:N0} rows generated ({p.Generated.Active:N0} active todos). ")
              .Append(c, $"wrk with {p.Clients} connections against the API of one process-mode stack started with `--Infra:Pooler=pgbouncer --Infra:PoolerPoolSize={p.PoolSize}`; ")
              .Append("between variants the API is restarted with its primary connections straight to PostgreSQL (its own Npgsql pool, up to 100 connections) or through PgBouncer. ")
              .Append("Every read goes to the primary (`Reads:UseReplica=false`): the pooler stands in front of the primary only. ")
              .Append("Connections: the primary's client backends (the API's or PgBouncer's, the exporter's) just before the measured run (after its warm-up) and the most at once during it, sampled every 50 ms.")
              .AppendLine()
          .AppendLine();
        md.AppendLine("Each variant's median round (by requests/s); connections: the most any of its rounds had.").AppendLine()
          .AppendLine("| variant | workload | requests/s | p50 ms | p99 ms | errors | primary connections before | most during |")
          .AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var run in p.Medians)
        {
            var w = run.Wrk;
            md.AppendLine(c, $"| {run.Variant} | {run.Workload} | {w.PerSecond:N0} | {w.P50Ms:0.0} | {w.P99Ms:0.0} | {w.Errors + w.Non2xx:N0} | {run.IdleConnections:N0} | {run.PeakConnections:N0} |");
        }

        md.AppendLine().AppendLine("Every round, in the order run:").AppendLine()
          .AppendLine("| variant | workload | requests/s | p99 ms | errors | connections before | most during |")
          .AppendLine("|---|---|---|---|---|---|---|");
        foreach (var run in p.Runs)
        {
            var w = run.Wrk;
            md.AppendLine(c, $"| {run.Variant} | {run.Workload} | {w.PerSecond:N0} | {w.P99Ms:0.0} | {w.Errors + w.Non2xx:N0} | {run.IdleConnections:N0} | {run.PeakConnections:N0} |");
        }

        md.AppendLine().AppendLine(c, $"{Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory; the stack and the load generator share them.").AppendLine();
        AppendSettings(md, r);
        var path = Path.Combine(folder, $"{stem}.md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    public static string WriteSplit(SplitBenchResult s, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var md = new StringBuilder();
        md.AppendLine(c, $"# TodoScale benchmark: the online re-split 16 -> 32, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .AppendLine(c, $"Reproduce: `{r.Command}`. Whole run: {s.Elapsed.TotalMinutes:0.0} min. `partitions split --to 32` run as a process, as an operator runs it, against the stack's primary (durable commits, a streaming replica) while {s.Writers} connections write as the API's role; every write's latency is kept, not a sample. Targets reported, never asserted.")
          .AppendLine();
        md.AppendLine("## Targets").AppendLine()
          .AppendLine("| figure | target | measured | |").AppendLine("|---|---|---|---|")
          .AppendLine(c, $"| longest write blocked during the split (every write overlapping it) | <= 1,000 ms | {s.During.MaxMs:0.0} ms | {(s.During.MaxMs <= 1_000 ? "met" : "**not met**")} |")
          .AppendLine(c, $"| writes failed during the split | 0 | {s.During.Failures:N0} | {(s.During.Failures == 0 ? "met" : "**not met**")} |")
          .AppendLine(c, $"| rows after = generated + inserted by the writers | equal | {s.RowsAfter:N0} vs {s.RowsExpected:N0} | {(s.RowsAfter == s.RowsExpected ? "met" : "**not met**")} |")
          .AppendLine(c, $"| total time of the split, {s.Rows:N0} todos + {s.AiRows:N0} AI interactions | (reported) | {s.SplitSeconds:0.0} s | n/a |")
          .AppendLine();
        md.AppendLine("## The split").AppendLine().AppendLine(c, $"`partitions split --to 32` printed: {s.SplitLine}").AppendLine();
        md.AppendLine("## Writes").AppendLine()
          .AppendLine(c, $"{s.Writers} connections as todoscale_app, one transaction per write (SET LOCAL app.user_id, then half inserts of a root, half renames of a generated todo), as fast as they can.").AppendLine()
          .AppendLine("| window | writes | per s | p50 ms | p99 ms | max ms | failed |").AppendLine("|---|---|---|---|---|---|---|");
        foreach (var w in new[] { s.Before, s.During, s.After })
        {
            md.AppendLine(c, $"| {w.Name} | {w.Writes:N0} in {w.Seconds:0.0} s | {w.PerSecond:N0} | {w.P50Ms:0.00} | {w.P99Ms:0.00} | {w.MaxMs:0.0} | {w.Failures:N0} |");
        }

        md.AppendLine().AppendLine("## Data and server").AppendLine()
          .AppendLine(c, $"- todos_active generated with {s.Rows:N0} rows for {s.Users:N0} users (trees of four: a root, two subtasks, one below the first; 30% finished in the last 10 days) and ai_interactions with {s.AiRows:N0}, in {s.Generated.TotalSeconds:0.0} s, 16 partitions each.")
          .AppendLine(c, $"- {Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory; the stack (primary, replica, Redis, the API, the archiver service), the CLI and the writers share them.")
          .AppendLine();
        AppendSettings(md, r);

        var path = Path.Combine(folder, $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-split.md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    /// <summary>`--engine citus`: one PostgreSQL and Citus side by side, the page's plan on Citus, what the coordinator adds.</summary>
    public static string WriteCitus(CitusBenchResult b, BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var c = CultureInfo.InvariantCulture;
        var (pg, ci) = (b.Postgres, b.Citus);
        var routed = ci.Plan.Any(l => l == "Task Count: 1");
        var md = new StringBuilder();
        md.AppendLine(c, $"# TodoScale benchmark: one PostgreSQL and Citus, {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .AppendLine(c, $"Reproduce: `{r.Command}` (seed {r.Seed}). Whole run: {b.Elapsed.TotalMinutes:0.0} min. Each engine on a stack of its own started by the AppHost (process mode; `--Infra:Database=citus` for Citus), one after the other, with the same generated users and todos; every server of both gets the settings below. On Citus every node (coordinator, its standby, 2 workers) runs on this one machine: the figures show what the coordinator's extra hop and planning cost, not what more machines give.")
          .AppendLine();
        md.AppendLine("## Side by side").AppendLine()
          .AppendLine(c, $"| figure | {pg.Engine} | {ci.Engine} | Citus / PostgreSQL |").AppendLine("|---|---|---|---|");
        Row("layout", pg.Layout, ci.Layout, null);
        Row("rows loaded (binary COPY, 4 connections)", $"{pg.Generated.Rows:N0} at {pg.Generated.RowsPerSecond:N0} rows/s", $"{ci.Generated.Rows:N0} at {ci.Generated.RowsPerSecond:N0} rows/s", ci.Generated.RowsPerSecond / pg.Generated.RowsPerSecond);
        Row("first page at the database, p50 (2 clients, prepared, generic plan)", $"{pg.Page.P50:0.000} ms", $"{ci.Page.P50:0.000} ms", ci.Page.P50 / pg.Page.P50);
        Row("first page at the database, p99", $"{pg.Page.P99:0.000} ms", $"{ci.Page.P99:0.000} ms", ci.Page.P99 / pg.Page.P99);
        Row("first page at the database, pages/s", $"{pg.Page.PerSecond:N0}", $"{ci.Page.PerSecond:N0}", ci.Page.PerSecond / pg.Page.PerSecond);
        Row("the same page re-planned each call (plan_cache_mode = auto), p50 / p99", $"{pg.PageReplanned.P50:0.000} / {pg.PageReplanned.P99:0.000} ms", $"{ci.PageReplanned.P50:0.000} / {ci.PageReplanned.P99:0.000} ms", ci.PageReplanned.P50 / pg.PageReplanned.P50);
        Row("API, GET /api/todos uncached, requests/s (wrk, 32 connections)", $"{pg.Api.PerSecond:N0}", $"{ci.Api.PerSecond:N0}", ci.Api.PerSecond / pg.Api.PerSecond);
        Row("API p50 / p99", $"{pg.Api.P50Ms:0.00} / {pg.Api.P99Ms:0.00} ms", $"{ci.Api.P50Ms:0.00} / {ci.Api.P99Ms:0.00} ms", ci.Api.P99Ms / pg.Api.P99Ms);
        Row("API errors (socket errors + non-2xx)", $"{pg.Api.Errors + pg.Api.Non2xx:N0} of {pg.Api.Requests:N0}", $"{ci.Api.Errors + ci.Api.Non2xx:N0} of {ci.Api.Requests:N0}", null);
        Row("archive pass (`archive --once`), rows/s", $"{pg.Archive.Rows:N0} todos in {pg.Archive.Seconds:0.0} s: {pg.Archive.RowsPerSecond:N0}/s", $"{ci.Archive.Rows:N0} todos in {ci.Archive.Seconds:0.0} s: {ci.Archive.RowsPerSecond:N0}/s", ci.Archive.RowsPerSecond / pg.Archive.RowsPerSecond);
        md.AppendLine();

        md.AppendLine("## The page on Citus: routed to one shard").AppendLine()
          .AppendLine(c, $"`EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)` of the prepared page (`plan_cache_mode = force_generic_plan`, as the API runs it) for one typical user, through the coordinator: {(routed ? "**Task Count: 1**, the query went to the one shard that holds the user" : "**not routed to one shard** (no `Task Count: 1` line)")}.")
          .AppendLine().AppendLine("```");
        foreach (var line in ci.Plan)
        {
            md.AppendLine(line);
        }

        md.AppendLine("```").AppendLine();
        if (ci.PageThroughCoordinator is { } via && ci.PageOnWorker is { } direct)
        {
            md.AppendLine("## What the coordinator adds").AppendLine()
              .AppendLine(c, $"The same page for the same {ci.WorkerUsers}, alternated in rounds after a warm-up: through the coordinator (as the API sends it), and sent straight to the user's shard on the worker (`todos_active_<shardid>`, the worker's own plan, no coordinator).")
              .AppendLine()
              .AppendLine("| path | pages | pages/s | p50 ms | p90 ms | p99 ms | max ms |").AppendLine("|---|---|---|---|---|---|---|");
            foreach (var m in new[] { via, direct })
            {
                md.AppendLine(c, $"| {m.Variant} | {m.Latency.Count:N0} | {m.PerSecond:N0} | {m.Latency.Ms(50):0.000} | {m.Latency.Ms(90):0.000} | {m.Latency.Ms(99):0.000} | {m.Latency.MaxMs:0.000} |");
            }

            md.AppendLine().AppendLine(c, $"The coordinator adds **{via.P50 - direct.P50:0.000} ms at p50** and {via.P99 - direct.P99:0.000} ms at p99 per page (its planning, the extra round trip to the worker over a cached connection, and passing the rows back).").AppendLine();
        }

        md.AppendLine("## Distributed shards per node (Citus)").AppendLine().AppendLine("| node | shards |").AppendLine("|---|---|");
        foreach (var (node, shards) in ci.ShardsPerNode)
        {
            md.AppendLine(c, $"| {node} | {shards:N0} |");
        }

        md.AppendLine().AppendLine("## What changes on real machines").AppendLine()
          .AppendLine("- Here the coordinator, the workers, the API, Redis, Prometheus and the load generator share 2 cores, so every Citus figure pays for the extra servers' CPU; the single server gets the cores to itself. On real machines each worker has its own CPUs, memory and disk: throughput grows with the workers (each page touches one shard on one worker), and the data that has to stay in memory is split between them.")
          .AppendLine("- The coordinator's added latency (above) is one extra round trip and its planning; on a network it grows by the round-trip time between coordinator and worker (typically 0.1-0.5 ms in one zone). Its planning is the part a bigger coordinator or more coordinators (any node with the metadata can take queries) spreads.")
          .AppendLine("- The archive pass moves each user's trees on the user's worker, in one transaction with two-phase commit across workers: here every 2PC is between processes on one machine; across machines it costs a round trip per prepared transaction, and the workers move their users' rows in parallel.")
          .AppendLine("- Loading with COPY through the coordinator routes each row to its shard; on real machines the workers write in parallel on their own disks.")
          .AppendLine();
        md.AppendLine("## Machine and PostgreSQL").AppendLine()
          .AppendLine(c, $"- {Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory; each stack (its servers, Redis, Prometheus, the API) and the load generators share them.")
          .AppendLine(c, $"- Data: {pg.Generated.Active:N0} active and {pg.Generated.Archived:N0} archived todos, {pg.Generated.Projects:N0} projects and {pg.Generated.AiInteractions:N0} AI interactions of {r.Scale.Users:N0} users (Zipf), the same on both engines.")
          .AppendLine();
        AppendSettings(md, r);

        var path = Path.Combine(folder, $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}-citus.md");
        File.WriteAllText(path, md.ToString());
        return path;

        void Row(string figure, string postgres, string citus, double? ratio) =>
            md.AppendLine(c, $"| {figure} | {postgres} | {citus} | {(ratio is { } x && double.IsFinite(x) ? x.ToString("0.00", c) : "-")} |");
    }

    public static string Write(BenchResults r, string folder)
    {
        Directory.CreateDirectory(folder);
        var stem = $"{r.Started:yyyy-MM-dd}-{r.Scale.Name}";
        var plots = WritePlots(r, folder, stem);
        var md = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        md.AppendLine(c, $"# TodoScale benchmark: {r.Scale.Name} scale, {r.Started:yyyy-MM-dd HH:mm} UTC")
          .AppendLine()
          .AppendLine(c, $"Reproduce: `{r.Command}` (seed {r.Seed}). Whole run: {r.Elapsed.TotalMinutes:0.0} min. Every figure below comes from this run, on this machine; targets are the issue's, reported, never asserted.")
          .AppendLine();

        md.AppendLine("## Targets").AppendLine()
          .AppendLine("| # | figure | target | measured | |").AppendLine("|---|---|---|---|---|");
        foreach (var (number, figure, target, measured, met) in Targets(r))
        {
            md.AppendLine(c, $"| {number} | {figure} | {target} | {measured} | {(met is null ? "n/a" : met.Value ? "met" : "**not met**")} |");
        }

        md.AppendLine();
        md.AppendLine("## 1. First page at the database").AppendLine()
          .AppendLine("The first page (50) of a user's open todos (`status IN (todo, in_progress)`, newest first): the statement the API builds (`TodoListQuery.BuildSql`), prepared, 2 clients, the same users for every variant, variants alternated in rounds after a warm-up. The API runs it prepared (Npgsql auto-prepare) with `SET LOCAL plan_cache_mode = force_generic_plan` in the same batch; the re-planned variant is how it ran before. Latency per execution, client side (round trip included); as the bench's superuser, so without the API's row-level security predicate.")
          .AppendLine();
        PageTable(md, "Typical users (the 99% below the Zipf head)", r.PageTypical, r.BeforeTypical);
        PageTable(md, $"The heaviest 1% of users ({r.HeavyUsers:N0} users; the heaviest has {r.HeaviestOpenTodos:N0} open todos)", r.PageHeavy, null);
        md.AppendLine("Plans (EXPLAIN ANALYZE of the prepared statement):").AppendLine();
        foreach (var (what, plan) in r.Plans)
        {
            md.AppendLine(c, $"- {what}: `{plan}`");
        }

        md.AppendLine().AppendLine(c, $"![page latency, typical users]({plots.PageTypical})").AppendLine()
          .AppendLine(c, $"![page latency, heaviest users]({plots.PageHeavy})").AppendLine();

        md.AppendLine("## 2. The same page through the API").AppendLine()
          .AppendLine("`GET /api/todos?status=todo,in_progress&limit=50` with a bearer token per user, rotating per request, each user carrying the `TodoScale-Session` position the API gave it (read once per user before the run, as a client keeps it): wrk, 2 threads, 32 connections. Uncached: the API restarted with `Cache:Enabled=false` (reads routed to the replica as in production). Cached: the same users' first pages in Redis. Ceiling: the API's statement in a raw prepared Npgsql loop, 32 connections, on the primary. Peer: the API a team would write without TodoScale (bench/TodoScale.Bench.Peer: ASP.NET Core minimal API, EF Core, JWT bearer) over the unpartitioned copy with the same indexes, no replica, no cache, the same users and load. Uncached and peer: three rounds each, alternated in the same rounds; the row is the run of median throughput, every run is listed below the table.")
          .AppendLine()
          .AppendLine("| variant | requests/s | p50 ms | p90 ms | p99 ms | p99.9 ms | errors |").AppendLine("|---|---|---|---|---|---|---|");
        foreach (var w in new[] { r.ApiUncached, r.ApiCached, r.PeerApi }.OfType<Workloads.WrkResult>())
        {
            md.AppendLine(c, $"| {w.Variant} | {w.PerSecond:N0} | {w.P50Ms:0.00} | {w.P90Ms:0.00} | {w.P99Ms:0.00} | {w.P999Ms:0.00} | {w.Errors + w.Non2xx} |");
        }

        if (r.RawLoop is { } raw)
        {
            md.AppendLine(c, $"| {raw.Variant} | {raw.PerSecond:N0} | {raw.Latency.Ms(50):0.00} | {raw.Latency.Ms(90):0.00} | {raw.Latency.Ms(99):0.00} | {raw.Latency.Ms(99.9):0.00} | 0 |");
        }

        if (r.MetersOn.Count > 0 && r.PeerRuns.Count > 0)
        {
            md.AppendLine().AppendLine(c, $"Each round, requests/s (p99 ms): TodoScale uncached {string.Join(", ", r.MetersOn.Select(w => $"{w.PerSecond:N0} ({w.P99Ms:0.0})"))}; peer {string.Join(", ", r.PeerRuns.Select(w => $"{w.PerSecond:N0} ({w.P99Ms:0.0})"))}.");
        }

        md.AppendLine().AppendLine(c, $"![API latency]({plots.Http})").AppendLine();

        md.AppendLine("## 3. Archival").AppendLine();
        md.AppendLine("Two passes of the real CLI (`TodoScale.Archiver archive --once`, default settings otherwise) over the finished trees the data leaves active (completed in the last 60 days): first on its own with `--older-than 45d`, then with the default 30-day cut-off while the API serves a steady load. Rows/s includes the ANALYZE of what each pass changed.").AppendLine()
          .AppendLine("| pass | rows | seconds | rows/s | its line |").AppendLine("|---|---|---|---|---|");
        foreach (var (label, pass) in new[] { ("on its own", r.Archive), ("during API load", r.ArchiveUnderLoad) })
        {
            if (pass is not null)
            {
                md.AppendLine(c, $"| {label} | {pass.Rows:N0} | {pass.Seconds:0.0} | **{pass.RowsPerSecond:N0}** | `{pass.SummaryLine}` |");
            }
        }

        if (r.BareMove is { } bare && r.Archive is { } alone)
        {
            // pg_waldump's exact count of the move's LSN range; pg_stat_wal's where pg_waldump could not read it.
            static string Wal(long rows, WalProfile profile) =>
                string.Create(CultureInfo.InvariantCulture, $"{(double)profile.Total.Records / rows:0.0} | {profile.Total.FullPageImages:N0} | {(double)profile.Total.Bytes / rows:N0}");

            md.AppendLine().AppendLine("The pass on its own against a bare set-based move of the very same rows (put back untimed into the room they left, then moved per hash partition in batches of 5,000 by DELETE .. RETURNING into INSERT, one transaction a batch, no subtree rule, no row triggers or foreign-key checks, the same tables and indexes, one worker per core taking whole partitions), and the archiver once more on those rows put back the same way (plus the few that reached 45 days in between). Each put-back runs after a VACUUM, so the free space map sends the rows back into the holes the move left, spread over the partitions' pages as the first pass found them: the bare move and the second pass are the like-for-like pair, and the heap pages column says they met the same layout. Each move starts from a CHECKPOINT after a VACUUM; the WAL each wrote is counted by pg_waldump over its LSN range (bytes: the range's length; the archiver's includes its ANALYZE):").AppendLine()
              .AppendLine("| move | rows | heap pages they sat on | seconds | rows/s | WAL records / row | full-page images | WAL bytes / row |").AppendLine("|---|---|---|---|---|---|---|---|")
              .AppendLine(c, $"| archiver, first pass (rows where written) | {alone.Rows:N0} | (where generated) | {alone.Seconds:0.0} | **{alone.RowsPerSecond:N0}** | {Wal(alone.Rows, bare.FirstPassWal)} |")
              .AppendLine(c, $"| bare move, rows put back ({bare.Batches} batches, {bare.Workers} workers) | {bare.Rows:N0} | {bare.Pages:N0} | {bare.Seconds:0.0} | **{bare.RowsPerSecond:N0}** | {Wal(bare.Rows, bare.Wal)} |");
            if (bare is { Again: { } again, AgainWal: { } againWal })
            {
                md.AppendLine(c, $"| archiver, rows put back | {again.Rows:N0} | {bare.AgainPages:N0} | {again.Seconds:0.0} | **{again.RowsPerSecond:N0}** | {Wal(again.Rows, againWal)} |")
                  .AppendLine().AppendLine(c, $"On the same layout the archiver moves at {again.RowsPerSecond / bare.RowsPerSecond * 100:0}% of the bare move's rate; its first pass, over the rows where the generator wrote them, at {alone.RowsPerSecond / bare.RowsPerSecond * 100:0}%.");
            }

            WalProfiles(md, [("archiver, first pass", bare.FirstPassWal), ("bare move", bare.Wal), ("archiver, rows put back", bare.AgainWal)]);
        }

        md.AppendLine().AppendLine("The API under a light steady load (4 concurrent requests, uncached) while idle and during the second pass:").AppendLine()
          .AppendLine("| API | requests | p50 ms | p99 ms | p99.9 ms | errors |").AppendLine("|---|---|---|---|---|---|");
        foreach (var m in new[] { r.ApiIdle, r.ApiDuringArchive }.OfType<Measured>())
        {
            md.AppendLine(c, $"| {m.Variant} | {m.Latency.Count:N0} | {m.Latency.Ms(50):0.00} | {m.Latency.Ms(99):0.00} | {m.Latency.Ms(99.9):0.00} | {m.Errors} |");
        }

        md.AppendLine().AppendLine("## 4. Scale curve").AppendLine()
          .AppendLine("The page query (TodoScale, typical users) measured as the generator reached each size, after ANALYZE:").AppendLine()
          .AppendLine("| rows in todos_active | p50 ms | p99 ms |").AppendLine("|---|---|---|");
        foreach (var (rows, p50, p99) in r.Curve)
        {
            md.AppendLine(c, $"| {rows:N0} | {p50:0.000} | {p99:0.000} |");
        }

        md.AppendLine().AppendLine(c, $"![scale curve]({plots.Curve})").AppendLine();

        md.AppendLine("## 5. One big table against TodoScale").AppendLine();
        if (r.BigTable is { } big)
        {
            md.AppendLine("After the archive pass, on the same rows: TodoScale's `todos_active` (every partition, indexes included) against the original design's single `todos` table (all todos, primary key only). A backup of what changes: `pg_dump -Fc -Z1` of the active partitions (archive months are immutable and backed up once) against the whole table. REINDEX: the largest partition's primary key against the big table's.").AppendLine()
              .AppendLine("| | TodoScale | one big table | ratio |").AppendLine("|---|---|---|---|")
              .AppendLine(c, $"| rows | {big.ActiveRows:N0} (todos_active) | {big.BigTableRows:N0} | |")
              .AppendLine(c, $"| table size (heap) | {Mb(big.ActiveHeapBytes)} | {Mb(big.BigTableHeapBytes)} | {Smaller(big.ActiveHeapBytes, big.BigTableHeapBytes)} |")
              .AppendLine(c, $"| with indexes (TodoScale: 8 per partition; the big table: its primary key) | {Mb(big.ActiveBytes)} | {Mb(big.BigTableBytes)} | {Smaller(big.ActiveBytes, big.BigTableBytes)} |")
              .AppendLine(c, $"| backup of what changes | {big.ActiveBackup.TotalSeconds:0.00} s ({Mb(big.ActiveBackupBytes)}) | {big.BigTableBackup.TotalSeconds:0.00} s ({Mb(big.BigTableBackupBytes)}) | {big.BigTableBackup / big.ActiveBackup:0.0}x faster |")
              .AppendLine(c, $"| REINDEX primary key | {big.PartitionReindex.TotalSeconds:0.000} s ({big.Partition}) | {big.BigTableReindex.TotalSeconds:0.000} s | {big.BigTableReindex / big.PartitionReindex:0.0}x faster |")
              .AppendLine();
        }

        md.AppendLine("## 6. Metrics overhead").AppendLine()
          .AppendLine("API throughput (uncached page, wrk 32 connections) with TodoScale's meters listened to (`Telemetry:TodoScaleMeters=true`, the default) and not, alternated:").AppendLine()
          .AppendLine("| meters | runs | requests/s (each run) | mean requests/s | p99 ms (each run) |").AppendLine("|---|---|---|---|---|");
        foreach (var (name, runs) in new[] { ("on", r.MetersOn), ("off", r.MetersOff) })
        {
            if (runs.Count > 0)
            {
                md.AppendLine(c, $"| {name} | {runs.Count} | {string.Join(", ", runs.Select(w => w.PerSecond.ToString("N0", c)))} | {runs.Average(w => w.PerSecond):N0} | {string.Join(", ", runs.Select(w => w.P99Ms.ToString("0.00", c)))} |");
            }
        }

        if (r.IndexReport is { } indexReport)
        {
            md.AppendLine().AppendLine("## 7. Index usage after the run").AppendLine()
              .AppendLine("What the operators' `partitions status --indexes --unused-after 0s` printed at the end (pg_stat_user_indexes since the servers started: the load, the page queries, the archive passes, the baselines' tables too). No target: an index no query used is a question for its owner, not a page.").AppendLine()
              .AppendLine("```").AppendLine(indexReport).AppendLine("```");
        }

        md.AppendLine().AppendLine("## Machine and PostgreSQL").AppendLine()
          .AppendLine(c, $"- {Environment.ProcessorCount} cores ({Machine.Cpu()}), {Machine.MemoryGb():0.0} GiB memory, {System.Runtime.InteropServices.RuntimeInformation.OSDescription}, .NET {Environment.Version}")
          .AppendLine("- The stack: the AppHost in process mode (the test harness's `TestApp`), PostgreSQL primary + streaming replica, Redis, the API; the bench, wrk and every server share these cores.")
          .AppendLine();
        AppendSettings(md, r);

        md.AppendLine().AppendLine("## Data").AppendLine();
        if (r.Generated is { } g)
        {
            md.AppendLine(c, $"- {r.LoadedUsers:N0} users, Zipf by todo count (weight 1/sqrt(rank)); a third of the todos are subtasks (depth up to 3), about 60% finished with completed_at over 400 days; finished trees older than 60 days were loaded into the archive, as earlier passes would have left them.")
              .AppendLine(c, $"- Loaded {g.Active:N0} active todos, {g.Archived:N0} archived todos, {g.Projects:N0} projects, {g.AiInteractions:N0} AI interactions by binary COPY in {g.Elapsed.TotalSeconds:0.0} s: **{g.RowsPerSecond:N0} rows/s** (triggers and FK checks off while loading: rows consistent by construction).")
              .AppendLine(c, $"- Baselines (the unpartitioned copy with the same indexes, the one big table) built in {r.BaselinesBuilt.TotalSeconds:0.0} s.");
        }

        var path = Path.Combine(folder, stem + ".md");
        File.WriteAllText(path, md.ToString());
        return path;
    }

    private static IEnumerable<(string Number, string Figure, string Target, string Measured, bool? Met)> Targets(BenchResults r)
    {
        var c = CultureInfo.InvariantCulture;
        var ts = r.PageTypical.FirstOrDefault();
        var flat = r.PageTypical.FirstOrDefault(m => m.Variant.StartsWith("Unpartitioned", StringComparison.Ordinal));
        if (ts is not null)
        {
            yield return ("1", "page p99, TodoScale, typical users", "<= 0.1 ms (medium)", $"{ts.P99:0.000} ms", ts.P99 <= 0.1);
            if (flat is not null)
            {
                var ratio = ts.P50 / flat.P50;
                yield return ("1", "page p50, TodoScale / unpartitioned, same indexes", "within 5%", $"{ratio:0.00}x ({ts.P50:0.000} / {flat.P50:0.000} ms)", ratio <= 1.05);
            }

            if (r.BeforeTypical is { } before)
            {
                var speedup = before.P50 / ts.P50;
                yield return ("1", "page p50, original table / TodoScale", ">= 1000x", $"{speedup:N0}x ({before.P50:0.0} / {ts.P50:0.000} ms)", speedup >= 1000);
            }
        }

        if (r.ApiUncached is { } api)
        {
            yield return ("2", "API p99, uncached, 32 connections", "<= 5 ms", $"{api.P99Ms:0.00} ms", api.P99Ms <= 5);
            if (r.RawLoop is { } raw)
            {
                var share = api.PerSecond / raw.PerSecond;
                yield return ("2", "API throughput / raw Npgsql loop", ">= 50%", $"{share * 100:0}% ({api.PerSecond:N0} / {raw.PerSecond:N0} per s)", share >= 0.5);
                var p99Ratio = api.P99Ms / raw.P99;
                yield return ("2", "API p99 / raw Npgsql loop p99", "<= 3x", $"{p99Ratio:0.0}x ({api.P99Ms:0.00} / {raw.P99:0.00} ms)", p99Ratio <= 3);
            }

            if (r.PeerApi is { } peer)
            {
                var ratio = api.PerSecond / peer.PerSecond;
                yield return ("2", "API throughput / the peer API's (EF Core, unpartitioned)", "> 1x", $"{ratio:0.00}x ({api.PerSecond:N0} / {peer.PerSecond:N0} per s; peer p99 {peer.P99Ms:0.00} ms)", ratio > 1);
            }
        }

        if (r.ApiCached is { } cached)
        {
            yield return ("2", "API p99, cached", "<= 2 ms", $"{cached.P99Ms:0.00} ms", cached.P99Ms <= 2);
        }

        if (r.Archive is { } archive)
        {
            yield return ("3", "archival rows/s (a pass on its own)", ">= 150,000", archive.RowsPerSecond.ToString("N0", c), archive.RowsPerSecond >= 150_000);
        }

        if (r.BareMove is { Again: { } pass } bareMove)
        {
            var share = pass.RowsPerSecond / bareMove.RowsPerSecond;
            yield return ("3", "archival rows/s / a bare set-based move of the same rows, same layout", ">= 80%", $"{share * 100:0}% ({pass.RowsPerSecond:N0} / {bareMove.RowsPerSecond:N0} per s)", share >= 0.8);
        }

        if (r.ApiIdle is { } idle && r.ApiDuringArchive is { } during)
        {
            var ratio = during.P99 / idle.P99;
            yield return ("3", "API p99 during the pass / idle", "<= 2x", $"{ratio:0.00}x ({during.P99:0.00} / {idle.P99:0.00} ms)", ratio <= 2);
        }

        if (r.Curve.Count >= 2)
        {
            var growth = r.Curve[^1].P99 / r.Curve[0].P99;
            yield return ("4", $"page p99 growth {r.Curve[0].Rows:N0} -> {r.Curve[^1].Rows:N0} rows", "<= 1.3x", $"{growth:0.00}x", growth <= 1.3);
        }

        if (r.BigTable is { } big)
        {
            var down = 1 - (double)big.ActiveHeapBytes / big.BigTableHeapBytes;
            yield return ("5", "active table size (heap) vs one big table", "down >= 80%", $"down {down * 100:0}%", down >= 0.8);
            var backup = big.BigTableBackup / big.ActiveBackup;
            yield return ("5", "backup of what changes vs whole table", ">= 8x faster", $"{backup:0.0}x", backup >= 8);
            var reindex = big.BigTableReindex / big.PartitionReindex;
            yield return ("5", "REINDEX one partition vs whole table's index", ">= 10x faster", $"{reindex:0.0}x", reindex >= 10);
        }

        if (r.MetersOn.Count > 0 && r.MetersOff.Count > 0)
        {
            var cost = 1 - r.MetersOn.Average(w => w.PerSecond) / r.MetersOff.Average(w => w.PerSecond);
            yield return ("6", "throughput cost of TodoScale's meters", "<= 3%", $"{cost * 100:0.0}%", cost <= 0.03);
        }
    }

    /// <summary>pg_waldump's view of each move, side by side: full-page images by relation, then records and images by record type.</summary>
    private static void WalProfiles(StringBuilder md, (string Move, WalProfile? Profile)[] moves)
    {
        var c = CultureInfo.InvariantCulture;
        var shown = moves.Where(m => m.Profile is { Failure: null }).Select(m => (m.Move, Profile: m.Profile!)).ToArray();
        foreach (var (move, profile) in moves.Where(m => m.Profile is { Failure: not null }).Select(m => (m.Move, m.Profile!)))
        {
            md.AppendLine().AppendLine(c, $"pg_waldump could not read the WAL of the {move} ({profile.From} to {profile.To}): {profile.Failure}");
        }

        if (shown.Length == 0)
        {
            return;
        }

        string Header(string first) => $"| {first} | {string.Join(" | ", shown.Select(s => s.Move))} |\n|---|{string.Concat(shown.Select(_ => "---|"))}";
        // The lines with the most full-page images in any move, and those with the most records.
        IEnumerable<string> Top(Func<WalProfile, IReadOnlyList<WalProfile.Line>> lines, int count) =>
            shown.SelectMany(s => lines(s.Profile).Take(count).Concat(lines(s.Profile).OrderByDescending(l => l.Records).Take(count)).Select(l => l.Name))
                 .Distinct()
                 .OrderByDescending(name => shown.Max(s => lines(s.Profile).FirstOrDefault(l => l.Name == name)?.FullPageImages ?? 0))
                 .ThenByDescending(name => shown.Max(s => lines(s.Profile).FirstOrDefault(l => l.Name == name)?.Records ?? 0));

        md.AppendLine().AppendLine("Where each move's WAL went: `pg_waldump` over the LSN range it wrote (from its checkpoint to its end), full-page images by the relation whose page they hold (partitions and their indexes under their table's or index's name):").AppendLine()
          .AppendLine(Header("full-page images of"));
        foreach (var relation in Top(p => p.ByRelation, 6))
        {
            md.AppendLine(c, $"| {relation} | {string.Join(" | ", shown.Select(s => (s.Profile.ByRelation.FirstOrDefault(l => l.Name == relation)?.FullPageImages ?? 0).ToString("N0", c)))} |");
        }

        md.AppendLine(c, $"| all | {string.Join(" | ", shown.Select(s => s.Profile.ByRelation.Sum(l => l.FullPageImages).ToString("N0", c)))} |")
          .AppendLine().AppendLine("And by record type, records (of them carrying a full-page image):").AppendLine()
          .AppendLine(Header("record"));
        foreach (var type in Top(p => p.ByRecord, 6))
        {
            md.AppendLine(c, $"| {type} | {string.Join(" | ", shown.Select(s => s.Profile.ByRecord.FirstOrDefault(l => l.Name == type) is { } l ? $"{l.Records:N0} ({l.FullPageImages:N0})" : "0"))} |");
        }

        md.AppendLine(c, $"| all | {string.Join(" | ", shown.Select(s => $"{s.Profile.ByRecord.Sum(l => l.Records):N0} ({s.Profile.ByRecord.Sum(l => l.FullPageImages):N0})"))} |");
    }

    private static void PageTable(StringBuilder md, string title, List<Measured> variants, Measured? before)
    {
        var c = CultureInfo.InvariantCulture;
        md.AppendLine(c, $"{title}:").AppendLine()
          .AppendLine("| variant | queries | queries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |").AppendLine("|---|---|---|---|---|---|---|---|");
        foreach (var m in before is null ? variants : [.. variants, before])
        {
            md.AppendLine(c, $"| {m.Variant} | {m.Latency.Count:N0} | {m.PerSecond:N0} | {m.Latency.Ms(50):0.000} | {m.Latency.Ms(90):0.000} | {m.Latency.Ms(99):0.000} | {m.Latency.Ms(99.9):0.000} | {m.Latency.MaxMs:0.000} |");
        }

        md.AppendLine();
    }

    private static (string PageTypical, string PageHeavy, string Http, string Curve) WritePlots(BenchResults r, string folder, string stem)
    {
        var names = (PageTypical: $"{stem}-page-typical.png", PageHeavy: $"{stem}-page-heavy.png", Http: $"{stem}-api.png", Curve: $"{stem}-scale-curve.png");
        Plots.Percentiles(Path.Combine(folder, names.PageTypical), "First page of open todos at the database, typical users",
            [.. r.PageTypical.Select(m => (m.Variant, m.P50, m.P99))]);
        Plots.Percentiles(Path.Combine(folder, names.PageHeavy), "First page of open todos at the database, heaviest 1% of users",
            [.. r.PageHeavy.Select(m => (m.Variant, m.P50, m.P99))]);
        var http = new List<(string, double, double)>();
        if (r.ApiUncached is { } u)
        {
            http.Add((u.Variant, u.P50Ms, u.P99Ms));
        }

        if (r.ApiCached is { } cached)
        {
            http.Add((cached.Variant, cached.P50Ms, cached.P99Ms));
        }

        if (r.RawLoop is { } raw)
        {
            http.Add((raw.Variant, raw.P50, raw.P99));
        }

        if (r.PeerApi is { } peer)
        {
            http.Add((peer.Variant, peer.P50Ms, peer.P99Ms));
        }

        Plots.Percentiles(Path.Combine(folder, names.Http), "The page at 32 connections: API uncached, cached, raw Npgsql loop, peer API", http);
        Plots.ScaleCurve(Path.Combine(folder, names.Curve), r.Curve);
        return names;
    }

    private static string Smaller(long ours, long theirs) => ours <= theirs
        ? $"{(1 - (double)ours / theirs) * 100:0}% smaller"
        : $"{(double)ours / theirs:0.0}x larger";

    private static string Mb(long bytes) => bytes >= 1L << 30
        ? $"{bytes / (double)(1L << 30):0.00} GiB"
        : $"{bytes / (double)(1L << 20):0.0} MiB";
}

internal static class Machine
{
    public static string Cpu() =>
        File.Exists("/proc/cpuinfo")
            ? File.ReadLines("/proc/cpuinfo").FirstOrDefault(l => l.StartsWith("model name", StringComparison.Ordinal))?.Split(':', 2)[1].Trim() ?? "unknown CPU"
            : "unknown CPU";

    public static double MemoryGb()
    {
        var line = File.Exists("/proc/meminfo") ? File.ReadLines("/proc/meminfo").FirstOrDefault(l => l.StartsWith("MemTotal", StringComparison.Ordinal)) : null;
        return line is null ? 0 : long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0 / 1024.0;
    }
}
