using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Stack;

namespace TodoScale.Bench.Workloads;

/// <summary>What wrk measured: requests, errors and its latency percentiles (wrk keeps every request in an HdrHistogram).</summary>
public sealed record WrkResult(string Variant, long Requests, double Seconds, long Errors, long Non2xx, double P50Ms, double P90Ms, double P99Ms, double P999Ms, double MaxMs)
{
    public double PerSecond => Requests / Seconds;
}

/// <summary>
/// HTTP load on the API: wrk (from apt) at 32 connections on 2 threads, a bearer token per user rotating per
/// request; and, for the archive workload, a small in-process load that runs until told to stop.
/// </summary>
public sealed class HttpLoad(BenchStack stack, string workFolder)
{
    public const string PagePath = "/api/todos?status=todo,in_progress&limit=50";

    /// <param name="writeEvery">0: every request reads the page; n: every n-th request of a connection creates a todo
    /// (for the user whose page it read last) instead.</param>
    /// <param name="target">another API than the stack's (the peer), given the same tokens.</param>
    /// <param name="carrySessions">Each user's reads carry the TodoScale-Session position the API gave that user (read
    /// once per user before the run), as a client that keeps it does. Read-only runs only: wrk cannot tie a response
    /// to its request across a thread's connections, so positions that writes move are not followed.</param>
    public async Task<WrkResult> WrkAsync(
        string variant, IReadOnlyList<Guid> users, TimeSpan duration, int connections, CancellationToken cancellationToken,
        int writeEvery = 0, Uri? target = null, bool carrySessions = false)
    {
        if (carrySessions && writeEvery > 0)
        {
            throw new ArgumentException("Sessions are carried in read-only runs only.", nameof(carrySessions));
        }

        var sessions = carrySessions ? await SessionsAsync(users, target ?? stack.ApiBase, cancellationToken) : null;
        var script = Path.Combine(workFolder, "page.lua");
        var lua = new StringBuilder("local tokens = {\n");
        foreach (var user in users)
        {
            lua.Append("  \"").Append(stack.Token(user)).Append("\",\n");
        }

        lua.Append("}\nlocal sessions = {\n");
        foreach (var user in users)
        {
            lua.Append("  \"").Append(sessions?.GetValueOrDefault(user) ?? "").Append("\",\n");
        }

        lua.Append(CultureInfo.InvariantCulture, $$"""
            }
            local i = math.random(#tokens)
            local n = 0
            local writeEvery = {{writeEvery}}
            request = function()
              n = n + 1
              if writeEvery > 0 and n % writeEvery == 0 then
                return wrk.format("POST", "/api/todos", { ["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json" },
                  '{"title":"bench write"}')
              end
              i = (i % #tokens) + 1
              local headers = { ["Authorization"] = "Bearer " .. tokens[i] }
              if sessions[i] ~= "" then
                headers["TodoScale-Session"] = sessions[i]
              end
              return wrk.format("GET", "{{PagePath}}", headers)
            end
            done = function(summary, latency, requests)
              local e = summary.errors
              io.write(string.format("BENCH {\"requests\":%d,\"duration_us\":%d,\"errors\":%d,\"non2xx\":%d,\"p50\":%d,\"p90\":%d,\"p99\":%d,\"p999\":%d,\"max\":%d}\n",
                summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
                latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max))
            end
            """);
        await File.WriteAllTextAsync(script, lua.ToString(), cancellationToken);

        var info = new ProcessStartInfo("wrk",
        [
            "-t2", $"-c{connections}", $"-d{Math.Max(1, (int)Math.Round(duration.TotalSeconds))}s", "--timeout", "10s", "-s", script,
            (target ?? stack.ApiBase).GetLeftPart(UriPartial.Authority),
        ])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start wrk");
        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = await process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("BENCH ", StringComparison.Ordinal))
            ?? throw new InvalidOperationException($"wrk printed no result (exit {process.ExitCode}): {output}{error}");
        using var json = JsonDocument.Parse(line[6..]);
        var root = json.RootElement;
        double Ms(string name) => root.GetProperty(name).GetInt64() / 1000.0;
        return new WrkResult(variant, root.GetProperty("requests").GetInt64(), root.GetProperty("duration_us").GetInt64() / 1e6,
            root.GetProperty("errors").GetInt64(), root.GetProperty("non2xx").GetInt64(),
            Ms("p50"), Ms("p90"), Ms("p99"), Ms("p999"), Ms("max"));
    }

    /// <summary>The TodoScale-Session position the API answers each user's first page with (none from an API without it).</summary>
    private async Task<Dictionary<Guid, string?>> SessionsAsync(IReadOnlyList<Guid> users, Uri api, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { BaseAddress = api, Timeout = TimeSpan.FromSeconds(30) };
        var sessions = new System.Collections.Concurrent.ConcurrentDictionary<Guid, string?>();
        await Parallel.ForEachAsync(users, new ParallelOptions { MaxDegreeOfParallelism = 8, CancellationToken = cancellationToken }, async (user, token) =>
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, PagePath);
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", stack.Token(user));
            using var response = await http.SendAsync(request, token);
            response.EnsureSuccessStatusCode();
            sessions[user] = response.Headers.TryGetValues("TodoScale-Session", out var values) ? values.Single() : null;
        });
        return new Dictionary<Guid, string?>(sessions);
    }

    /// <summary>A steady, light load (<paramref name="concurrency"/> loops) until <paramref name="stop"/> is cancelled; every request timed.</summary>
    public async Task<Measured> UntilAsync(string variant, IReadOnlyList<Guid> users, int concurrency, CancellationToken stop)
    {
        using var handler = new SocketsHttpHandler { MaxConnectionsPerServer = concurrency, PooledConnectionLifetime = TimeSpan.FromMinutes(10) };
        using var http = new HttpClient(handler) { BaseAddress = stack.ApiBase, Timeout = TimeSpan.FromSeconds(30) };
        var tokens = users.Select(stack.Token).ToArray();
        long errors = 0;
        var clock = Stopwatch.StartNew();
        var loops = Enumerable.Range(0, concurrency).Select(async loop =>
        {
            var latency = new Latency();
            var random = new Random(loop);
            while (!stop.IsCancellationRequested)
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, PagePath);
                request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", tokens[random.Next(tokens.Length)]);
                var start = Stopwatch.GetTimestamp();
                try
                {
                    using var response = await http.SendAsync(request, CancellationToken.None);
                    await response.Content.ReadAsByteArrayAsync(CancellationToken.None);
                    if (!response.IsSuccessStatusCode)
                    {
                        Interlocked.Increment(ref errors);
                    }
                }
                catch (HttpRequestException)
                {
                    Interlocked.Increment(ref errors);
                }

                latency.Record(start);
            }

            return latency;
        }).ToList();
        var total = new Latency();
        foreach (var latency in await Task.WhenAll(loops))
        {
            total.Add(latency);
        }

        return new Measured(variant, total, clock.Elapsed, errors);
    }
}
