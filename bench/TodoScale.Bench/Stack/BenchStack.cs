using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Npgsql;
using TodoScale.ServiceDefaults.Auth;
using TodoScale.Testing;

namespace TodoScale.Bench.Stack;

/// <summary>
/// The stack a run measures: the real AppHost in process mode (PostgreSQL primary + streaming replica, Redis,
/// the API, `migrate`) started by the test harness's own code on a throwaway data root, the servers sized for the
/// scale. The archiver worker is stopped once the schema is in (its daily window must not move rows while data
/// loads); workload 3 runs the real `archive --once` instead. Disposing stops everything and deletes the folder.
/// </summary>
public sealed class BenchStack : IAsyncDisposable
{
    private readonly string _dataRoot;
    private readonly ApiSwitches _switches;

    private BenchStack(DistributedApplication app, string dataRoot, ApiSwitches switches, string primary, string signingKey)
    {
        App = app;
        _dataRoot = dataRoot;
        _switches = switches;
        PrimaryConnectionString = primary;
        SigningKey = signingKey;
    }

    public DistributedApplication App { get; }

    /// <summary>The stack's data root (its servers' folders, pgBackRest's configuration and repository).</summary>
    public string DataRoot => _dataRoot;

    /// <summary>The primary as the superuser (the AppHost's `todos` connection string).</summary>
    public string PrimaryConnectionString { get; }

    public string SigningKey { get; }

    public Uri ApiBase => App.GetEndpoint("api", "http");

    /// <param name="appHostArgs">More AppHost arguments, e.g. --Infra:Database=citus.</param>
    public static async Task<BenchStack> StartAsync(IReadOnlyDictionary<string, string> postgresSettings, IEnumerable<string>? appHostArgs = null)
    {
        var dataRoot = TestApp.NewDataRoot();
        var switches = new ApiSwitches();
        try
        {
            var app = await TestApp.StartAsync(dataRoot,
                [.. postgresSettings.Select(s => $"--Infra:PostgresSettings:{s.Key}={s.Value}"), "--Infra:ScrapeInterval=15s", .. appHostArgs ?? []],
                builder =>
                {
                    // The bench prints its own progress; the servers' and services' logs stay out of it.
                    builder.Services.AddLogging(logging => logging
                        .AddFilter((_, level) => level >= LogLevel.Warning)
                        .AddFilter("TodoScale.AppHost.Resources", LogLevel.None));
                    var api = builder.CreateResourceBuilder(builder.Resources.OfType<ProjectResource>().Single(r => r.Name == "api"));
                    var primary = builder.Resources.OfType<IResourceWithConnectionString>().Single(r => r.Name == "todos");
                    api.WithEnvironment(context =>
                    {
                        context.EnvironmentVariables["Cache__Enabled"] = switches.Cache ? "true" : "false";
                        context.EnvironmentVariables["Telemetry__TodoScaleMeters"] = switches.Meters ? "true" : "false";
                        context.EnvironmentVariables["Logging__LogLevel__Default"] = "Warning";
                        if (switches.DirectPrimary)
                        {
                            // Past the pooler the AppHost put in front of the primary: the API's own pool to the server.
                            context.EnvironmentVariables["ConnectionStrings__todos"] = new ConnectionStringReference(primary, optional: false);
                            context.EnvironmentVariables["Database__Pooled"] = "false";
                        }

                        if (switches.MaxAutoPrepare is { } prepare)
                        {
                            context.EnvironmentVariables["Database__MaxAutoPrepare"] = prepare.ToString(System.Globalization.CultureInfo.InvariantCulture);
                        }

                        if (!switches.UseReplica)
                        {
                            context.EnvironmentVariables["Reads__UseReplica"] = "false";
                        }
                    });
                });
            await app.ResourceCommands().ExecuteCommandAsync("archiver", KnownResourceCommands.StopCommand);
            var primary = await app.GetConnectionStringAsync("todos") ?? throw new InvalidOperationException("no todos connection string");
            var key = File.ReadAllText(Path.Combine(dataRoot, "auth-signing.key")).Trim();
            return new BenchStack(app, dataRoot, switches, primary, key);
        }
        catch
        {
            Directory.Delete(dataRoot, recursive: true);
            throw;
        }
    }

    public NpgsqlConnection OpenPrimary(string? applicationName = null) => Open(PrimaryConnectionString, applicationName);

    /// <summary>An unpooled connection to a server of the stack, without a command timeout.</summary>
    public static NpgsqlConnection Open(string connectionString, string? applicationName = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString)
        {
            ApplicationName = applicationName ?? "todoscale-bench",
            CommandTimeout = 0,
            Pooling = false,
        };
        var connection = new NpgsqlConnection(builder.ConnectionString);
        connection.Open();
        return connection;
    }

    public string Token(Guid user) =>
        TodoScaleTokens.Create(new AuthOptions { SigningKey = SigningKey }, user, admin: false, DateTimeOffset.UtcNow, TimeSpan.FromHours(6));

    /// <summary>Restarts the API with the first-page cache and TodoScale's meters on or off, and waits until it is healthy.</summary>
    public async Task ConfigureApiAsync(bool cache, bool meters)
    {
        if (_switches.Cache == cache && _switches.Meters == meters)
        {
            return;
        }

        _switches.Cache = cache;
        _switches.Meters = meters;
        await RestartApiAsync();
    }

    /// <summary>
    /// Restarts the API with its primary connections <paramref name="direct"/> (past a pooler the stack has) or as the
    /// AppHost wired them, Npgsql's auto-prepare set (null: the API's default), and its reads on the replica or not.
    /// </summary>
    public async Task ConfigureApiConnectionsAsync(bool direct, int? maxAutoPrepare, bool useReplica)
    {
        _switches.DirectPrimary = direct;
        _switches.MaxAutoPrepare = maxAutoPrepare;
        _switches.UseReplica = useReplica;
        await RestartApiAsync();
    }

    private async Task RestartApiAsync()
    {
        var result = await App.ResourceCommands().ExecuteCommandAsync("api", KnownResourceCommands.RestartCommand);
        if (!result.Success)
        {
            throw new InvalidOperationException($"restarting the api failed: {result.Message}");
        }

        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await App.ResourceNotifications.WaitForResourceHealthyAsync("api", cts.Token);
    }

    public async ValueTask DisposeAsync()
    {
        await App.DisposeAsync();
        try
        {
            Directory.Delete(_dataRoot, recursive: true);
        }
        catch (IOException)
        {
            // A server that took a moment longer to exit: the folder is in /tmp and harmless.
        }
    }

    private sealed class ApiSwitches
    {
        public bool Cache { get; set; } = true;

        public bool Meters { get; set; } = true;

        public bool DirectPrimary { get; set; }

        public int? MaxAutoPrepare { get; set; }

        public bool UseReplica { get; set; } = true;
    }
}

internal static class AppExtensions
{
    public static ResourceCommandService ResourceCommands(this DistributedApplication app) =>
        app.Services.GetRequiredService<ResourceCommandService>();
}
