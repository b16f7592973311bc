using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TodoScale.Testing;

/// <summary>
/// Starts the real AppHost (Aspire.Hosting.Testing) in process mode with its data under a temp folder and waits,
/// with a bound on every wait, until every resource is healthy and `migrate` has finished.
/// </summary>
public static class TestApp
{
    public static readonly TimeSpan StartTimeout = TimeSpan.FromMinutes(3);

    /// <summary>The long-running resources; each must reach Healthy.</summary>
    public static readonly string[] HealthyResources = ["todos", "todos-replica", "cache", "prometheus", "alertmanager", "postgres-exporter", "postgres-exporter-replica", "api", "archiver"];

    public const string Migrate = "migrate";

    /// <summary>
    /// The AppHost's own settings in every test: the Production environment whatever launch profile comes first in
    /// TodoScale.AppHost/Properties/launchSettings.json (Aspire.Hosting.Testing adopts that profile's environment
    /// variables, which make it Development: a developer's user secrets and second-by-second telemetry exports).
    /// </summary>
    public static readonly string[] HostSettings = ["--environment=Production"];

    /// <summary>
    /// Starts the AppHost on <paramref name="dataRoot"/>. <paramref name="args"/> are added to (and override) the
    /// test settings; <paramref name="configure"/> may change resources before the build (the benchmark uses both).
    /// </summary>
    public static async Task<DistributedApplication> StartAsync(
        string dataRoot, IEnumerable<string>? args = null, Action<IDistributedApplicationTestingBuilder>? configure = null)
    {
        using var cts = new CancellationTokenSource(StartTimeout);
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TodoScale_AppHost>(
        [
            "--Infra:Mode=process",
            .. HostSettings,
            $"--Infra:DataRoot={dataRoot}",
            "--Infra:ScrapeInterval=1s",
            "--Infra:AlertFor=2s", // every alert's `for`, so the end-to-end alert test sees one fire in seconds
            "--Infra:AlertRepeatInterval=2s", // and Alertmanager sends it at once and again every 2 s (silence test)
            // Fixed ports in launchSettings (api 5180, archiver 5190) must not clash with a developer's running stack.
            "--DcpPublisher:RandomizePorts=true",
            .. args ?? [],
        ], cts.Token);
        // The archiver's partition gauges refresh every second here (30 s by default), as Prometheus scrapes.
        builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "archiver"))
            .WithEnvironment("Maintenance__StatsInterval", "00:00:01");
        // Tests and the benchmark drive the API with a handful of users at thousands of requests a second: each
        // user's budget is raised so the limiter runs but never refuses (RateLimitTests runs an API with small budgets).
        builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "api"))
            .WithEnvironment("RateLimit__PerSecond", "1000000")
            .WithEnvironment("RateLimit__Burst", "1000000");
        configure?.Invoke(builder);
        builder.Services.AddLogging(logging => logging
            .SetMinimumLevel(LogLevel.Warning)
            // "not accepting connections yet" is the expected state of every server while it starts.
            .AddFilter("Microsoft.Extensions.Diagnostics.HealthChecks", LogLevel.None));

        var app = await builder.BuildAsync(cts.Token);
        try
        {
            await app.StartAsync(cts.Token);
            var notifications = app.Services.GetRequiredService<ResourceNotificationService>();
            // On Citus (--Infra:Database=citus) the workers too.
            var healthy = HealthyResources.Concat(builder.Resources.Select(r => r.Name).Where(n => n.StartsWith("citus-worker-", StringComparison.Ordinal))).ToList();
            await Task.WhenAll(healthy.Select(name => notifications.WaitForResourceHealthyAsync(name, cts.Token)));
            await notifications.WaitForResourceAsync(Migrate, KnownResourceStates.Finished, cts.Token);
            return app;
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            // Every resource's state, read before the app (and its services) is disposed.
            var notifications = app.Services.GetRequiredService<ResourceNotificationService>();
            var states = builder.Resources.Select(r => r.Name).Select(name =>
                notifications.TryGetCurrentState(name, out var e)
                    ? $"{name}={e.Snapshot.State?.Text}/{e.Snapshot.HealthStatus}"
                    : $"{name}=?").ToList();
            var logs = await LastLogLinesAsync(app, [.. builder.Resources.Select(r => r.Name)], unhealthyToo: true);
            await app.DisposeAsync();
            throw new TimeoutException($"the AppHost did not become healthy within {StartTimeout}: {string.Join(", ", states)}\n{logs}");
        }
        catch (Exception e) when (e is not TimeoutException)
        {
            // A resource that failed (a server, migrate, the API): its own last lines say why.
            var logs = await LastLogLinesAsync(app, [.. builder.Resources.Select(r => r.Name)], unhealthyToo: true);
            await app.DisposeAsync();
            throw new InvalidOperationException($"{e.Message}\n{logs}", e);
        }
    }

    /// <summary>
    /// The last lines each resource that is not running (exited, failed) wrote, for a start that failed; with
    /// <paramref name="unhealthyToo"/> (a start that timed out) also each running one that is not healthy.
    /// </summary>
    private static async Task<string> LastLogLinesAsync(DistributedApplication app, IReadOnlyList<string> names, bool unhealthyToo = false)
    {
        var notifications = app.Services.GetRequiredService<ResourceNotificationService>();
        var loggers = app.Services.GetRequiredService<ResourceLoggerService>();
        var text = new System.Text.StringBuilder();
        foreach (var name in names)
        {
            if (!notifications.TryGetCurrentState(name, out var e)
                || (e.Snapshot.State?.Text is "Running" or "Waiting" or "NotStarted"
                    && !(unhealthyToo && e.Snapshot.State?.Text == "Running" && e.Snapshot.HealthStatus != Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy)))
            {
                continue;
            }

            var lines = new List<string>();
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            try
            {
                await foreach (var batch in loggers.GetAllAsync(name).WithCancellation(cts.Token))
                {
                    lines.AddRange(batch.Select(line => line.Content));
                }
            }
            catch (OperationCanceledException)
            {
            }

            text.AppendLine($"--- {name} ({e.Snapshot.State?.Text}, exit {e.Snapshot.ExitCode}):");
            foreach (var line in lines.TakeLast(25))
            {
                text.AppendLine(line);
            }
        }

        return text.ToString();
    }

    public static string NewDataRoot()
    {
        var root = Directory.CreateTempSubdirectory("todoscale-apphost-").FullName;
        ProcessRunner.MakeTraversable(root);
        return root;
    }
}
