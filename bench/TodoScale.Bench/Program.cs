using System.CommandLine;
using TodoScale.Bench;
using TodoScale.Testing;

// TodoScale.Bench: `./build.sh bench [--scale tiny|small|medium|large]` runs this. It starts its own stack, so it
// needs nothing running; it writes bench/results/<date>-<scale>.md and the plots beside it.
var scaleOption = new Option<string>("--scale") { Description = "tiny (seconds, for the tests), small (~1M rows), medium (20M: 10M active + 10M archived), large (50M: 1M and 10M curve points on the way).", DefaultValueFactory = _ => "small" };
var outputOption = new Option<string>("--output") { Description = "Where the report and plots go.", DefaultValueFactory = _ => Path.Combine(RepositoryPaths.Root, "bench", "results") };
var seedOption = new Option<int>("--seed") { Description = "The generator's seed (the same seed gives the same users and todos).", DefaultValueFactory = _ => 42 };
var workloadOption = new Option<string>("--workload") { Description = "all (workloads 1-6, the main report) legacy (the migration from the legacy `todos` table: backfill rows/s, insert throughput with the dual-write trigger off and on, the longest write stall in start and switch) split (the online re-split 16 -> 32 under write load: total time, the longest blocked write) soak (10 minutes of mixed API traffic with an archive pass in the middle: p99, errors and the API's memory over time), backup (a full pgBackRest backup of the generated data and a point-in-time restore of it, through the CLI: times and sizes) or pooler (the API at 200 clients with its primary connections direct, with and without auto-prepare, and through PgBouncer: throughput, p99 and the server connections used).", DefaultValueFactory = _ => "all" };
var engineOption = new Option<string>("--engine") { Description = "postgres (one PostgreSQL: the workloads above) or citus (the page, API and archive workloads on one PostgreSQL and on Citus, a coordinator + 2 workers, with the same data, in one report: <date>-<scale>-citus.md).", DefaultValueFactory = _ => "postgres" };
var root = new RootCommand("TodoScale benchmarks: TodoScale against an unpartitioned table and the original single table, on the same data, in one run.")
{
    scaleOption, outputOption, seedOption, workloadOption, engineOption,
};
root.SetAction(async (parse, cancellationToken) =>
{
    var name = parse.GetValue(scaleOption)!;
    if (BenchScale.Find(name) is not { } scale)
    {
        Console.Error.WriteLine($"bench: '{name}' is not a scale; use {string.Join(", ", BenchScale.All.Select(s => s.Name))}.");
        return 2;
    }

    if (!OnPath("wrk"))
    {
        Console.Error.WriteLine("bench: wrk is not installed (apt-get install wrk; ./build.sh bench installs it).");
        return 2;
    }

    var workload = parse.GetValue(workloadOption)!;
    if (workload is not ("all" or "legacy" or "split" or "soak" or "backup" or "pooler"))
    {
        Console.Error.WriteLine($"bench: '{workload}' is not a workload; use all, legacy, split, soak, backup or pooler.");
        return 2;
    }

    var engine = parse.GetValue(engineOption)!;
    if (engine is not ("postgres" or "citus"))
    {
        Console.Error.WriteLine($"bench: '{engine}' is not an engine; use postgres or citus.");
        return 2;
    }

    if (engine == "citus" && workload != "all")
    {
        Console.Error.WriteLine($"bench: --engine citus runs its own workloads (page, API, archive on both engines); leave out --workload {workload}.");
        return 2;
    }

    var command = $"./build.sh bench --scale {scale.Name}" + (parse.GetValue(seedOption) is var seed && seed != 42 ? $" --seed {seed}" : "")
        + (workload == "all" ? "" : $" --workload {workload}") + (engine == "citus" ? " --engine citus" : "");
    var run = new BenchRun(scale, parse.GetValue(seedOption), Path.GetFullPath(parse.GetValue(outputOption)!), command);
    var report = (engine, workload) switch
    {
        ("citus", _) => await run.RunCitusAsync(cancellationToken),
        (_, "legacy") => await run.RunLegacyAsync(cancellationToken),
        (_, "split") => await run.RunSplitAsync(cancellationToken),
        (_, "soak") => await run.RunSoakAsync(cancellationToken),
        (_, "pooler") => await run.RunPoolerAsync(cancellationToken),
        (_, "backup") => await run.RunBackupAsync(cancellationToken),
        _ => await run.RunAsync(cancellationToken),
    };
    Console.WriteLine($"bench: done, report at {report}");
    return 0;
});
return await root.Parse(args).InvokeAsync();

static bool OnPath(string program) =>
    (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator).Any(dir => File.Exists(Path.Combine(dir, program)));
