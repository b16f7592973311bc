using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;

namespace TodoScale.Bench.Workloads;

/// <summary>One variant of the API's primary connections under one workload.</summary>
/// <param name="IdleConnections">the primary's client backends just before the measured run, after its warm-up (the API's pool or PgBouncer's server connections, the exporter's).</param>
/// <param name="PeakConnections">the most client backends the primary had during the run.</param>
public sealed record PoolerRun(string Variant, string Workload, WrkResult Wrk, long IdleConnections, long PeakConnections);

public sealed record PoolerBenchResult(int Clients, int PoolSize, Generated Generated, IReadOnlyList<PoolerRun> Runs, TimeSpan Elapsed)
{
    /// <summary>Each variant and workload's median round by throughput, with the most connections any of its rounds saw.</summary>
    public IEnumerable<PoolerRun> Medians => Runs.GroupBy(r => (r.Variant, r.Workload)).Select(g =>
    {
        var ordered = g.OrderBy(r => r.Wrk.PerSecond).ToList();
        return ordered[ordered.Count / 2] with { PeakConnections = g.Max(r => r.PeakConnections) };
    });
}

/// <summary>
/// `--workload pooler`: the API at <see cref="Clients"/> concurrent clients (wrk) with its primary connections three
/// ways, on one stack started with --Infra:Pooler=pgbouncer: straight to PostgreSQL with Npgsql's auto-prepare (the
/// default), straight without it (what the pooler forces: the cost of planning the page query on every call), and
/// through PgBouncer 1.18 in transaction mode (<see cref="PoolSize"/> server connections). Two workloads each: the
/// page only, and one create for every four page reads. Every read goes to the primary (Reads:UseReplica=false), the
/// connections the pooler stands in front of. The primary's client backends are counted every 50 ms during a run.
/// </summary>
public static class PoolerBench
{
    public const int Clients = 200;
    public const int PoolSize = 20;
    public const int Rounds = 3;

    public static IEnumerable<string> AppHostArgs => ["--Infra:Pooler=pgbouncer", $"--Infra:PoolerPoolSize={PoolSize}"];

    public static async Task<PoolerBenchResult> RunAsync(BenchStack stack, BenchScale scale, int seed, string work, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (loaded, generated) = await Generator.LoadAllAsync(stack, scale, seed, cancellationToken);
        say($"pooler: loaded {generated.Rows:N0} rows; {Clients} clients, the API's primary connections three ways");
        var users = loaded.Where(u => u.Rank > Math.Max(1, scale.Users / 100)).Take(2000).Select(u => u.Id).ToList();
        var http = new HttpLoad(stack, work);
        var runs = new List<PoolerRun>();
        (string Name, bool Direct, int? Prepare)[] variants =
        [
            ("direct, auto-prepare (default)", true, null),
            ("direct, no auto-prepare", true, 0),
            ($"PgBouncer, transaction mode, {PoolSize} server connections", false, null),
        ];
        (string Name, int WriteEvery)[] workloads = [("page reads", 0), ("1 create : 4 page reads", 5)];
        // Rounds, each variant once a round in a rotated order, so neither a warming cache nor the rows the writes add
        // favour one variant; the report gives each variant's median round.
        for (var round = 0; round < Rounds; round++)
        {
            foreach (var (name, direct, prepare) in variants.Skip(round % variants.Length).Concat(variants.Take(round % variants.Length)))
            {
                await stack.ConfigureApiConnectionsAsync(direct, prepare, useReplica: false);
                foreach (var (workload, writeEvery) in workloads)
                {
                    await http.WrkAsync("warm-up", users, scale.ApiWarmup, Clients, cancellationToken, writeEvery);
                    await using var sampler = stack.OpenPrimary("bench-sampler");
                    var before = await CountAsync(sampler, cancellationToken);
                    using var stop = new CancellationTokenSource();
                    var peak = SampleAsync(sampler, stop.Token);
                    WrkResult run;
                    try
                    {
                        run = await http.WrkAsync(name, users, scale.HttpRun, Clients, cancellationToken, writeEvery);
                    }
                    finally
                    {
                        await stop.CancelAsync();
                    }

                    runs.Add(new PoolerRun(name, workload, run, before, await peak));
                    say($"  round {round + 1}, {name}, {workload}: {run.PerSecond:N0}/s, p99 {run.P99Ms:0.0} ms, errors {run.Errors + run.Non2xx}, primary connections {before} before, {await peak} at most");
                }
            }
        }

        await stack.ConfigureApiConnectionsAsync(direct: false, maxAutoPrepare: null, useReplica: true);
        return new PoolerBenchResult(Clients, PoolSize, generated, runs, clock.Elapsed);
    }

    private static async Task<long> CountAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()", connection);
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static async Task<long> SampleAsync(NpgsqlConnection connection, CancellationToken stop)
    {
        var peak = 0L;
        while (!stop.IsCancellationRequested)
        {
            peak = Math.Max(peak, await CountAsync(connection, CancellationToken.None));
            try
            {
                await Task.Delay(50, stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }

        return peak;
    }
}
