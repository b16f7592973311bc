using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using TodoScale.ServiceDefaults.Auth;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Api;

/// <summary>
/// Per-user rate limiting on a real API process (the built TodoScale.Api on the test stack's databases and Redis)
/// with small budgets: a user over the limit gets 429 ProblemDetails with Retry-After, counted in the metrics,
/// while another user at a normal pace gets every answer, no slower than alone.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class RateLimitTests(AppHostFixture fixture, ITestOutputHelper output)
{
    private const int Burst = 20;
    private const int PerSecond = 10;

    [Fact]
    public async Task A_user_over_the_limit_gets_429s_with_retry_after_and_does_not_slow_another_user()
    {
        var key = (await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"))).Trim();
        await using var api = await SecondApi.StartAsync(fixture, ("RateLimit__Burst", $"{Burst}"), ("RateLimit__PerSecond", $"{PerSecond}"));
        using var http = new HttpClient { BaseAddress = api.Address, Timeout = TimeSpan.FromSeconds(30) };
        var (flooder, steady) = (Client(http, key), Client(http, key));
        var alone = await PacedAsync(steady, count: 10);

        // The flood: 8 loops of one user as fast as the API answers, while the other user keeps its pace.
        using var stop = new CancellationTokenSource();
        var answers = new List<HttpResponseMessage>();
        var flood = Task.WhenAll(Enumerable.Range(0, 8).Select(async _ =>
        {
            while (!stop.IsCancellationRequested)
            {
                var response = await flooder.GetAsync("/api/todos?limit=1");
                await response.Content.LoadIntoBufferAsync();
                lock (answers)
                {
                    answers.Add(response);
                }
            }
        }));
        await Progress.UntilAsync(() => { lock (answers) { return answers.Count(a => a.StatusCode == HttpStatusCode.TooManyRequests) >= 50; } },
            () => "50 refusals of the flooding user");
        var during = await PacedAsync(steady, count: 10);
        await stop.CancelAsync();
        await flood;

        var refused = answers.Where(a => a.StatusCode == HttpStatusCode.TooManyRequests).ToList();
        output.WriteLine($"flooding user: {answers.Count} requests, {refused.Count} refused; steady user: p50 alone {Median(alone):0.0} ms, during the flood {Median(during):0.0} ms");
        var first = refused[0];
        Assert.Equal("application/problem+json", first.Content.Headers.ContentType?.MediaType);
        Assert.True(int.TryParse(first.Headers.RetryAfter?.ToString(), out var retryAfter) && retryAfter >= 1, $"Retry-After: {first.Headers.RetryAfter}");
        Assert.Contains("\"status\":429", await first.Content.ReadAsStringAsync());
        Assert.All(answers, a => Assert.True(a.StatusCode is HttpStatusCode.OK or HttpStatusCode.TooManyRequests, $"{a.StatusCode}"));
        // The other user was never refused, and not slowed beyond the noise of a shared 2-core machine.
        Assert.True(Median(during) < Median(alone) + 250, $"the steady user's p50 went from {Median(alone):0.0} ms to {Median(during):0.0} ms");

        var metrics = await http.GetStringAsync("/metrics");
        var counted = metrics.Split('\n').Where(l => l.StartsWith("todoscale_api_rate_limited_total", StringComparison.Ordinal))
            .Sum(l => double.Parse(l.Split(' ')[^1], System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(counted >= refused.Count, $"todoscale_api_rate_limited_total is {counted}, {refused.Count} were refused");
    }

    /// <summary>The user's requests at 5 a second (half its budget), each answered 200; their times in ms.</summary>
    private static async Task<List<double>> PacedAsync(HttpClient client, int count)
    {
        var times = new List<double>();
        for (var i = 0; i < count; i++)
        {
            var started = Stopwatch.GetTimestamp();
            var response = await client.GetAsync("/api/todos?limit=1");
            times.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await Task.Delay(200);
        }

        return times;
    }

    private static double Median(List<double> times) => times.Order().ElementAt(times.Count / 2);

    private static HttpClient Client(HttpClient http, string key)
    {
        var token = TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, Guid.CreateVersion7(), admin: false, DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        var client = new HttpClient { BaseAddress = http.BaseAddress, Timeout = http.Timeout };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }
}
