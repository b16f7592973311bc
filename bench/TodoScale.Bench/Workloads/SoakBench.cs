using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;

namespace TodoScale.Bench.Workloads;

/// <summary>One window of the soak: its requests' p99, its errors, the API's memory at its end.</summary>
public sealed record SoakSample(double Seconds, long Requests, long Errors, double P99Ms, double GcHeapMb, double WorkingSetMb);

public sealed record SoakResult(
    TimeSpan Duration, int Users, int TargetRate, long Requests, long Errors, IReadOnlyDictionary<string, (long Count, long Errors, double P99Ms)> Operations,
    IReadOnlyList<SoakSample> Samples, long Backlog, double ArchiveFromSeconds, double ArchiveToSeconds, TimeSpan Elapsed)
{
    /// <summary>The API's working set over the last third against the middle third (median of each): its growth once warm.</summary>
    public double WorkingSetGrowthPercent => Growth(s => s.WorkingSetMb);

    public double GcHeapGrowthPercent => Growth(s => s.GcHeapMb);

    private double Growth(Func<SoakSample, double> value)
    {
        var third = Samples.Count / 3;
        if (third == 0)
        {
            return double.NaN;
        }

        static double Median(IEnumerable<double> values) => values.Order().ElementAt(values.Count() / 2);
        var middle = Median(Samples.Skip(third).Take(third).Select(value));
        var last = Median(Samples.Skip(2 * third).Select(value));
        return (last - middle) / middle * 100;
    }
}

/// <summary>
/// A soak: <see cref="Rate"/> requests a second for 10 minutes (30 s at tiny scale) from <see cref="Users"/> users,
/// open loop (a request starts on schedule whether or not the last one finished): list pages, single reads,
/// creates, updates, completions with cascade, AI interactions and accepted AI batches; an archive pass over a
/// backlog of finished todos in the middle. Every 5 s: the window's p99, its errors and the API's GC heap and
/// working set. Zero errors and flat memory are its targets (reported, not asserted).
/// </summary>
public static class SoakBench
{
    private const int Users = 200;
    private const int Rate = 100;

    public static async Task<SoakResult> RunAsync(BenchStack stack, BenchScale scale, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var duration = scale.Name == "tiny" ? TimeSpan.FromSeconds(30) : TimeSpan.FromMinutes(10);
        var window = scale.Name == "tiny" ? TimeSpan.FromSeconds(2) : TimeSpan.FromSeconds(5);
        var backlog = scale.Name == "tiny" ? 5_000 : 100_000;

        await using (var db = stack.OpenPrimary())
        {
            say($"soak: a backlog of {backlog:N0} finished todos for the archive pass in the middle");
            await using var command = new Npgsql.NpgsqlCommand(
                $"""
                INSERT INTO todos_active (id, user_id, title, status, completed_at, created_at)
                SELECT gen_random_uuid(), md5('soak backlog' || g % 2000)::uuid, 'backlog ' || g, 'done', now() - interval '60 days', now() - interval '90 days'
                  FROM generate_series(1, {backlog}) g
                """, db) { CommandTimeout = 0 };
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 64, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
        {
            BaseAddress = stack.ApiBase,
            Timeout = TimeSpan.FromSeconds(30),
        };
        var users = Enumerable.Range(0, Users).Select(_ => new SoakUser(Guid.CreateVersion7(), stack)).ToArray();
        say($"soak: {Users} users, {Rate} requests/s for {duration.TotalMinutes:0.#} min, open loop");
        foreach (var user in users)
        {
            for (var i = 0; i < 3; i++)
            {
                await user.CreateAsync(http, $"seed {i}", cancellationToken);
            }
        }

        var calls = new ConcurrentQueue<(double At, string Operation, double Ms, bool Ok)>();
        var samples = new List<SoakSample>();
        using var gate = new SemaphoreSlim(256);
        var random = new Random(7);
        var started = Stopwatch.StartNew();
        var interval = TimeSpan.FromSeconds(1.0 / Rate);
        var next = TimeSpan.Zero;
        var nextSample = window;
        double archiveFrom = double.NaN, archiveTo = double.NaN;
        Task? archive = null;
        var inFlight = new List<Task>();
        while (started.Elapsed < duration)
        {
            next += interval;
            if (next > started.Elapsed)
            {
                await Task.Delay(next - started.Elapsed, cancellationToken);
            }

            if (archive is null && started.Elapsed >= duration / 2)
            {
                archiveFrom = started.Elapsed.TotalSeconds;
                archive = Task.Run(async () =>
                {
                    var line = await ArchiveAsync(stack, backlog, cancellationToken);
                    archiveTo = started.Elapsed.TotalSeconds;
                    say($"soak: {line}");
                }, cancellationToken);
                say($"soak: archive pass started at {archiveFrom:0} s");
            }

            var user = users[random.Next(users.Length)];
            var pick = random.Next(100);
            await gate.WaitAsync(cancellationToken);
            inFlight.Add(Task.Run(async () =>
            {
                try
                {
                    var at = started.Elapsed.TotalSeconds;
                    var (operation, ms, ok) = await user.OperateAsync(http, pick, cancellationToken);
                    calls.Enqueue((at, operation, ms, ok));
                }
                finally
                {
                    gate.Release();
                }
            }, cancellationToken));
            inFlight.RemoveAll(t => t.IsCompleted);

            if (started.Elapsed >= nextSample)
            {
                samples.Add(await SampleAsync(http, calls, nextSample - window, nextSample, cancellationToken));
                nextSample += window;
            }
        }

        await Task.WhenAll(inFlight);
        if (archive is not null)
        {
            await archive;
        }

        var all = calls.ToList();
        var operations = all.GroupBy(c => c.Operation).OrderBy(g => g.Key, StringComparer.Ordinal).ToDictionary(
            g => g.Key, g => ((long)g.Count(), (long)g.Count(c => !c.Ok), Percentile(g.Select(c => c.Ms), 0.99)));
        var errors = all.Count(c => !c.Ok);
        say($"soak: {all.Count:N0} requests, {errors:N0} errors; archive pass {archiveFrom:0}-{archiveTo:0} s");
        return new SoakResult(duration, Users, Rate, all.Count, errors, operations, samples, backlog, archiveFrom, archiveTo, clock.Elapsed);
    }

    /// <summary>The pass as an operator runs it (`archive --once`, the worker is stopped on the bench's stack); every backlog row must move.</summary>
    private static async Task<string> ArchiveAsync(BenchStack stack, int backlog, CancellationToken cancellationToken)
    {
        var line = await TodoScale.Testing.OperatorCli.SummaryAsync(stack.PrimaryConnectionString, ["archive", "--once"], "archive: moved", cancellationToken);
        await using var db = stack.OpenPrimary();
        var moved = await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM todos_archived WHERE title LIKE 'backlog %'", cancellationToken);
        return moved == backlog ? line : throw new InvalidOperationException($"the pass moved {moved:N0} of the {backlog:N0} backlog rows: {line}");
    }

    private static async Task<SoakSample> SampleAsync(
        HttpClient http, ConcurrentQueue<(double At, string Operation, double Ms, bool Ok)> calls, TimeSpan from, TimeSpan to, CancellationToken cancellationToken)
    {
        var inWindow = calls.Where(c => c.At >= from.TotalSeconds && c.At < to.TotalSeconds).ToList();
        var metrics = await http.GetStringAsync("/metrics", cancellationToken);
        var heap = metrics.Split('\n')
            .Where(l => l.StartsWith("dotnet_gc_last_collection_heap_size_bytes", StringComparison.Ordinal)
                        || l.StartsWith("process_runtime_dotnet_gc_heap_size_bytes", StringComparison.Ordinal))
            .Sum(l => double.Parse(l.Split(' ')[^1], CultureInfo.InvariantCulture));
        // The API's own report of its working set (System.Runtime's dotnet.process.memory.working_set): the resource's
        // pid is `dotnet run`'s, not the API's.
        var workingSet = metrics.Split('\n')
            .Where(l => l.StartsWith("dotnet_process_memory_working_set_bytes", StringComparison.Ordinal))
            .Sum(l => double.Parse(l.Split(' ')[^1], CultureInfo.InvariantCulture));
        return new SoakSample(to.TotalSeconds, inWindow.Count, inWindow.Count(c => !c.Ok), Percentile(inWindow.Select(c => c.Ms), 0.99),
            heap / 1_048_576, workingSet / 1_048_576);
    }

    private static double Percentile(IEnumerable<double> values, double p)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length == 0 ? 0 : sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(p * sorted.Length) - 1)];
    }

    /// <summary>One user of the soak and the todos it knows it has.</summary>
    private sealed class SoakUser(Guid id, BenchStack stack)
    {
        private readonly string _token = stack.Token(id);
        private readonly List<Guid> _todos = [];
        private readonly Lock _lock = new();

        public async Task CreateAsync(HttpClient http, string title, CancellationToken cancellationToken) =>
            await OperateAsync(http, 60, cancellationToken, title);

        /// <summary>An operation by <paramref name="pick"/> (0-99): 45 list, 15 read, 15 create, 10 update, 5 complete, 5 AI interaction, 5 AI batch.</summary>
        public async Task<(string Operation, double Ms, bool Ok)> OperateAsync(HttpClient http, int pick, CancellationToken cancellationToken, string? title = null)
        {
            Guid? todo;
            lock (_lock)
            {
                todo = _todos.Count == 0 ? null : _todos[Random.Shared.Next(_todos.Count)];
            }

            var (operation, method, path, body) = (pick, todo) switch
            {
                ( < 45, _) => ("list", HttpMethod.Get, "/api/todos?limit=20", null),
                ( < 60, { } t) => ("read", HttpMethod.Get, $"/api/todos/{t}", null),
                ( < 75, _) or (_, null) => ("create", HttpMethod.Post, "/api/todos", $$"""{"title":"{{title ?? "soak " + Guid.NewGuid().ToString("N")[..8]}}","priority":{{1 + pick % 5}}}"""),
                ( < 85, { } t) => ("update", HttpMethod.Patch, $"/api/todos/{t}", $$"""{"description":"touched {{pick}}"}"""),
                ( < 90, { } t) => ("complete", HttpMethod.Post, $"/api/todos/{t}/complete?cascade=true", null),
                ( < 95, { } t) => ("ai interaction", HttpMethod.Post, $"/api/todos/{t}/ai-interactions",
                    """{"kind":"generate_subtasks","model":"soak-model","prompt":"split this","response":"[]","tokensIn":100,"tokensOut":200,"latencyMs":900}"""),
                (_, { } t) => ("ai batch", HttpMethod.Post, $"/api/todos/{t}/subtasks/ai",
                    """{"subtasks":[{"title":"first step"},{"title":"second step"},{"title":"third step"}]}"""),
            };
            using var request = new HttpRequestMessage(method, path);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", _token);
            if (body is not null)
            {
                request.Content = new StringContent(body, Encoding.UTF8, "application/json");
            }

            var started = Stopwatch.GetTimestamp();
            try
            {
                using var response = await http.SendAsync(request, cancellationToken);
                var text = await response.Content.ReadAsStringAsync(cancellationToken);
                var ms = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
                // A 409 is an answer the API gives by design (a subtree too deep, a completed todo with open subtasks): not an error.
                var ok = response.IsSuccessStatusCode || response.StatusCode == HttpStatusCode.Conflict;
                if (operation == "create" && response.StatusCode == HttpStatusCode.Created && JsonNode.Parse(text)?["id"]?.GetValue<Guid>() is { } created)
                {
                    lock (_lock)
                    {
                        _todos.Add(created);
                    }
                }

                return (operation, ms, ok);
            }
            catch (HttpRequestException)
            {
                return (operation, Stopwatch.GetElapsedTime(started).TotalMilliseconds, false);
            }
        }
    }
}
