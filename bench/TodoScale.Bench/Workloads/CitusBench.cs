using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Stack;

namespace TodoScale.Bench.Workloads;

/// <summary>What one engine measured: the same data, page, API and archive workloads on one stack.</summary>
public sealed record EngineFigures(
    string Engine,
    string Layout,
    Generated Generated,
    Measured Page,
    Measured PageReplanned,
    Measured? PageThroughCoordinator,
    Measured? PageOnWorker,
    string? WorkerUsers,
    IReadOnlyList<string> Plan,
    WrkResult Api,
    ArchiveResult Archive,
    IReadOnlyList<(string Node, long Shards)> ShardsPerNode);

public sealed record CitusBenchResult(EngineFigures Postgres, EngineFigures Citus, TimeSpan Elapsed);

/// <summary>
/// `--engine citus`: the page, API and archive workloads on one PostgreSQL and on Citus (a coordinator + 2 workers,
/// the AppHost's `--Infra:Database=citus`), each on a stack of its own with the same generated data (same seed), one
/// after the other on this machine. On Citus also: the page's plan (routed to one shard: Task Count 1), and the same
/// page for the same users sent straight to the shard on its worker, so the difference is what the coordinator adds.
/// </summary>
public static class CitusBench
{
    public static async Task<CitusBenchResult> RunAsync(Func<IEnumerable<string>, Task<BenchStack>> start, BenchScale scale, int seed, string work, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var now = DateTimeOffset.UtcNow;
        say("one PostgreSQL: starting the stack");
        EngineFigures postgres;
        await using (var stack = await start([]))
        {
            postgres = await MeasureAsync(stack, "one PostgreSQL", citus: false, scale, seed, now, work, say, cancellationToken);
        }

        say("Citus (coordinator + 2 workers): starting the stack");
        EngineFigures citusFigures;
        await using (var stack = await start(["--Infra:Database=citus"]))
        {
            citusFigures = await MeasureAsync(stack, "Citus, coordinator + 2 workers", citus: true, scale, seed, now, work, say, cancellationToken);
        }

        return new CitusBenchResult(postgres, citusFigures, clock.Elapsed);
    }

    private static async Task<EngineFigures> MeasureAsync(
        BenchStack stack, string engine, bool citus, BenchScale scale, int seed, DateTimeOffset now, string work, Action<string> say, CancellationToken cancellationToken)
    {
        await using var db = stack.OpenPrimary();
        await Baselines.ExecuteAsync(db, """
            SELECT todoscale_ensure_archive_months('todos_archived', (now() - interval '400 days')::date, 16);
            SELECT todoscale_ensure_archive_months('ai_interactions_archived', (now() - interval '400 days')::date, 16);
            """, cancellationToken);
        var layout = citus
            ? $"todos_active: one distributed table of {await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass", cancellationToken)} shards over {await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM pg_dist_node WHERE noderole = 'primary' AND groupid > 0", cancellationToken)} workers"
            : $"todos_active: {await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_active'::regclass", cancellationToken)} hash partitions";

        // The same users and todos on both engines (one seed, one clock).
        var generator = new Generator(scale, seed, now);
        var loaders = Enumerable.Range(0, 4).Select(_ => stack.OpenPrimary("bench-load")).ToArray();
        var (loaded, generated) = await generator.LoadAsync(loaders, long.MaxValue, 0, cancellationToken);
        foreach (var loader in loaders)
        {
            await loader.DisposeAsync();
        }

        say($"{engine}: loaded {generated.Active:N0} active + {generated.Archived:N0} archived todos ({generated.RowsPerSecond:N0} rows/s)");
        foreach (var table in new[] { "todos_active", "todos_archived", "projects", "ai_interactions" })
        {
            await Baselines.ExecuteAsync(db, $"VACUUM ANALYZE {table}", cancellationToken);
        }

        var typical = loaded.Where(u => u.Rank > Math.Max(1, scale.Users / 100)).Take(5000).Select(u => u.Id).ToList();
        var pages = new PageQueries(stack, modulus: 16);

        say($"{engine}: the page at the database (generic plan as the API runs it, and re-planned each call)");
        var compared = await pages.CompareAsync([PageQueries.TodoScale, PageQueries.TodoScaleReplanned], typical, scale.QueryRun * 2, scale.Warmup, rounds: 2, cancellationToken);
        var (page, replanned) = (compared[0] with { Variant = engine }, compared[1] with { Variant = engine });
        var plan = await pages.ExplainAsync("todos_active", typical[0], "force_generic_plan", cancellationToken);

        Measured? throughCoordinator = null, onWorker = null;
        string? workerUsers = null;
        List<(string, long)> shardsPerNode = [];
        if (citus)
        {
            // The same page for the same users, through the coordinator and straight to the shard on its worker.
            var (worker, shards) = await ShardsOnOneWorkerAsync(db, typical, cancellationToken);
            var users = shards.Keys.ToList();
            var direct = new PageVariant("the user's shard, on its worker (no coordinator)", (user, _) => shards[user], PageQueries.TodoScale.SessionSetup,
                Server: new NpgsqlConnectionStringBuilder(stack.PrimaryConnectionString) { Host = worker.Host, Port = worker.Port }.ConnectionString);
            var coordinator = PageQueries.TodoScale with { Name = "through the coordinator" };
            say($"{engine}: the same page through the coordinator and on the worker ({users.Count:N0} users of {worker.Host}:{worker.Port})");
            var paths = await pages.CompareAsync([coordinator, direct], users, scale.QueryRun * 2, scale.Warmup, rounds: 2, cancellationToken);
            (throughCoordinator, onWorker) = (paths[0], paths[1]);
            workerUsers = $"{users.Count:N0} typical users whose shards are on the worker {worker.Host}:{worker.Port}";
            shardsPerNode = await ShardsPerNodeAsync(db, cancellationToken);
        }

        say($"{engine}: the page through the API (uncached)");
        var http = new HttpLoad(stack, work);
        var httpUsers = typical.Take(2000).ToList();
        await stack.ConfigureApiAsync(cache: false, meters: true);
        await http.WrkAsync("warm-up", httpUsers, scale.ApiWarmup, 32, cancellationToken);
        var api = await http.WrkAsync(engine, httpUsers, scale.HttpRun, 32, cancellationToken);
        say($"  {api.PerSecond:N0}/s, p99 {api.P99Ms:0.00} ms, errors {api.Errors + api.Non2xx}");

        say($"{engine}: an archive pass (archive --once, the default 30-day cut-off)");
        var archive = await ArchivePass.RunAsync(stack.PrimaryConnectionString, null, cancellationToken);
        say($"  {archive.SummaryLine}");
        return new EngineFigures(engine, layout, generated, page, replanned, throughCoordinator, onWorker, workerUsers, plan, api, archive, shardsPerNode);
    }

    /// <summary>The worker holding the first user's shard, and for each of the users on it, its shard's name there.</summary>
    private static async Task<((string Host, int Port) Worker, Dictionary<Guid, string> Shards)> ShardsOnOneWorkerAsync(NpgsqlConnection db, List<Guid> users, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("""
            SELECT u, shard_name('todos_active'::regclass, s.shardid), p.nodename, p.nodeport
              FROM unnest(@users) u
              CROSS JOIN LATERAL (SELECT get_shard_id_for_distribution_column('todos_active', u) AS shardid) s
              JOIN pg_dist_shard_placement p ON p.shardid = s.shardid
            """, db);
        command.Parameters.AddWithValue("users", users.ToArray());
        var rows = new List<(Guid User, string Shard, string Host, int Port)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                rows.Add((reader.GetGuid(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3)));
            }
        }

        var first = rows.First(r => r.User == users[0]);
        return ((first.Host, first.Port), rows.Where(r => r.Host == first.Host && r.Port == first.Port).ToDictionary(r => r.User, r => r.Shard));
    }

    private static async Task<List<(string, long)>> ShardsPerNodeAsync(NpgsqlConnection db, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT nodename || ':' || nodeport, count(*) FROM citus_shards WHERE citus_table_type = 'distributed' GROUP BY 1 ORDER BY 1", db);
        var result = new List<(string, long)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            result.Add((reader.GetString(0), reader.GetInt64(1)));
        }

        return result;
    }
}
