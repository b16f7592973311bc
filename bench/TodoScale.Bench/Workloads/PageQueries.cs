using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Api.Queries;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Stack;
using TodoScale.Data.Entities;
using TodoScale.Data.Legacy;
using TodoScale.Data.Partitioning;

namespace TodoScale.Bench.Workloads;

/// <summary>
/// Where a variant sends the page query, and how the session is set up; <paramref name="Server"/>: another server
/// than the stack's primary (a Citus worker, to query its shard without the coordinator).
/// </summary>
public sealed record PageVariant(string Name, Func<Guid, int, string> Table, string? SessionSetup = null, int Clients = 2, string? Server = null);

/// <summary>
/// Workload 1 (and the scale curve's points): the first page (50) of a user's open todos, the statement the API
/// builds (<see cref="TodoListQuery.BuildSql"/>), prepared, at the database, from 2 clients (pgbench-style).
/// Every execution's latency goes into one histogram per variant.
/// </summary>
public sealed class PageQueries(BenchStack stack, int modulus)
{
    /// <summary>The API's statement for GET /api/todos?status=todo,in_progress (limit 50, newest first).</summary>
    public static string Statement { get; } = new TodoListQuery([TodoStatus.Todo, TodoStatus.InProgress], null, null, null, null, TodoSort.Created, false, 50, null)
        .BuildSql(new NpgsqlCommand().Parameters, Guid.Empty);

    public static PageVariant TodoScale { get; } = new("TodoScale (partitioned parent, generic plan: as the API runs it)", (_, _) => "todos_active",
        "SET plan_cache_mode = force_generic_plan");

    public static PageVariant TodoScaleReplanned { get; } = new("TodoScale, plan_cache_mode = auto (re-planned each call)", (_, _) => "todos_active");

    public static PageVariant TodoScaleChild { get; } = new("TodoScale, the user's partition addressed (PartitionHash)",
        (user, modulus) => $"todos_active_p{PartitionHash.PartitionIndex(user, modulus):00}");

    public static PageVariant Flat { get; } = new("Unpartitioned table, same indexes", (_, _) => Data.Baselines.Flat);

    public static PageVariant Before { get; } = new("The original `todos` table (primary key only)", (_, _) => LegacySchema.Table);

    public async Task<Measured> RunAsync(PageVariant variant, IReadOnlyList<Guid> users, TimeSpan duration, CancellationToken cancellationToken, int minimumPerClient = 0)
    {
        var clients = Enumerable.Range(0, variant.Clients).Select(async client =>
        {
            await using var connection = variant.Server is { } server ? BenchStack.Open(server, "bench-page") : stack.OpenPrimary("bench-page");
            if (variant.SessionSetup is { } setup)
            {
                await using var set = new NpgsqlCommand(setup, connection);
                await set.ExecuteNonQueryAsync(cancellationToken);
            }

            var commands = new Dictionary<string, NpgsqlCommand>();
            var latency = new Latency();
            var random = new Random(client * 7919 + variant.Name.Length);
            var deadline = Stopwatch.GetTimestamp() + (long)(duration.TotalSeconds * Stopwatch.Frequency);
            var done = 0;
            while (Stopwatch.GetTimestamp() < deadline || done < minimumPerClient)
            {
                var user = users[random.Next(users.Count)];
                var command = await CommandAsync(connection, commands, variant.Table(user, modulus), cancellationToken);
                ((NpgsqlParameter<Guid>)command.Parameters[0]).TypedValue = user;
                var start = Stopwatch.GetTimestamp();
                await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
                {
                    while (await reader.ReadAsync(cancellationToken))
                    {
                    }
                }

                latency.Record(start);
                done++;
            }

            foreach (var command in commands.Values)
            {
                await command.DisposeAsync();
            }

            return latency;
        }).ToList();

        var clock = Stopwatch.StartNew();
        var results = await Task.WhenAll(clients);
        var total = new Latency();
        foreach (var result in results)
        {
            total.Add(result);
        }

        return new Measured(variant.Name, total, clock.Elapsed);
    }

    /// <summary>
    /// Runs the variants in alternation after a warm-up: each round gives every variant an equal slice, so drift
    /// (checkpoints, autovacuum, the other core) falls on all of them alike.
    /// </summary>
    public async Task<List<Measured>> CompareAsync(IReadOnlyList<PageVariant> variants, IReadOnlyList<Guid> users, TimeSpan each, TimeSpan warmup, int rounds, CancellationToken cancellationToken)
    {
        foreach (var variant in variants)
        {
            await RunAsync(variant, users, warmup, cancellationToken);
        }

        var totals = variants.ToDictionary(v => v.Name, _ => (Latency: new Latency(), Elapsed: TimeSpan.Zero));
        for (var round = 0; round < rounds; round++)
        {
            foreach (var variant in round % 2 == 0 ? variants : variants.Reverse())
            {
                var measured = await RunAsync(variant, users, each / rounds, cancellationToken);
                var (latency, elapsed) = totals[variant.Name];
                latency.Add(measured.Latency);
                totals[variant.Name] = (latency, elapsed + measured.Elapsed);
            }
        }

        return [.. variants.Select(v => new Measured(v.Name, totals[v.Name].Latency, totals[v.Name].Elapsed))];
    }

    /// <summary>EXPLAIN ANALYZE of the prepared statement for one user under a plan_cache_mode: the scan nodes, buffers and time.</summary>
    public async Task<string> PlanAsync(string table, Guid user, string planCacheMode, CancellationToken cancellationToken)
    {
        var lines = await ExplainAsync(table, user, planCacheMode, cancellationToken);

        // The plan's nodes (the first line and every "->" line), without costs: "Limit > Sort > Append > Index Scan ...".
        var nodes = lines.Where((l, i) => i == 0 || l.StartsWith("->", StringComparison.Ordinal))
            .Select(l => l.TrimStart('-', '>', ' '))
            .Select(l => l.Contains("(actual", StringComparison.Ordinal) ? l[..l.IndexOf("(actual", StringComparison.Ordinal)].Trim() + " " + Rows(l) : l)
            .Take(5);
        var buffers = lines.FirstOrDefault(l => l.StartsWith("Buffers:", StringComparison.Ordinal)) ?? "";
        var time = lines.FirstOrDefault(l => l.StartsWith("Execution Time", StringComparison.Ordinal)) ?? "";
        return $"{string.Join(" > ", nodes)}; {buffers}; {time}";

        static string Rows(string line)
        {
            var at = line.IndexOf("rows=", StringComparison.Ordinal);
            return at < 0 ? "" : "(" + line[at..].Split(' ')[0] + ")";
        }
    }

    /// <summary>EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) of the prepared page for one user, every line trimmed.</summary>
    public async Task<List<string>> ExplainAsync(string table, Guid user, string planCacheMode, CancellationToken cancellationToken)
    {
        await using var connection = stack.OpenPrimary("bench-plan");
        var statement = Statement.Replace("FROM todos_active ", $"FROM {table} ", StringComparison.Ordinal);
        var prepared = statement.Replace("@user_id", "$1", StringComparison.Ordinal).Replace("@statuses", "$2", StringComparison.Ordinal).Replace("@take", "$3", StringComparison.Ordinal);
        await Data.Baselines.ExecuteAsync(connection, $"SET plan_cache_mode = {planCacheMode}; PREPARE page(uuid, text[], integer) AS {prepared}", cancellationToken);
        await using var explain = new NpgsqlCommand($"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE page('{user}', ARRAY['todo','in_progress'], 51)", connection);
        var lines = new List<string>();
        await using (var reader = await explain.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                lines.Add(reader.GetString(0).Trim());
            }
        }

        return lines;
    }

    private static async Task<NpgsqlCommand> CommandAsync(NpgsqlConnection connection, Dictionary<string, NpgsqlCommand> commands, string table, CancellationToken cancellationToken)
    {
        if (commands.TryGetValue(table, out var command))
        {
            return command;
        }

        command = new NpgsqlCommand(Statement.Replace("FROM todos_active ", $"FROM {table} ", StringComparison.Ordinal), connection);
        command.Parameters.Add(new NpgsqlParameter<Guid>("user_id", NpgsqlDbType.Uuid));
        command.Parameters.Add(new NpgsqlParameter<string[]>("statuses", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = ["todo", "in_progress"] });
        command.Parameters.Add(new NpgsqlParameter<int>("take", NpgsqlDbType.Integer) { TypedValue = 51 });
        await command.PrepareAsync(cancellationToken);
        commands[table] = command;
        return command;
    }
}
