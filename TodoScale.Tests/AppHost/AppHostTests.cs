using System.Diagnostics;
using System.Net;
using System.Text.Json;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;
using TodoScale.Data.Schema;
using TodoScale.Testing;
using TodoScale.Tests.Dashboards;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// The whole stack started by the real AppHost: in process mode (<see cref="AppHostTestsInProcessMode"/>) and in
/// container mode under the engine that answers (<see cref="AppHostTestsInContainerMode"/>): the same checks.
/// </summary>
public abstract class AppHostTests(AppHostFixture fixture)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private DistributedApplication App => fixture.App;

    [EngineFact]
    public void Every_resource_is_healthy_and_migrate_finished_with_exit_code_0()
    {
        var notifications = App.Services.GetRequiredService<ResourceNotificationService>();
        foreach (var name in TestApp.HealthyResources)
        {
            Assert.True(notifications.TryGetCurrentState(name, out var resource), $"{name} has no state");
            Assert.Equal(KnownResourceStates.Running, resource.Snapshot.State?.Text);
            Assert.Equal(Microsoft.Extensions.Diagnostics.HealthChecks.HealthStatus.Healthy, resource.Snapshot.HealthStatus);
        }

        Assert.True(notifications.TryGetCurrentState(TestApp.Migrate, out var migrate));
        Assert.Equal(KnownResourceStates.Finished, migrate.Snapshot.State?.Text);
        Assert.Equal(0, migrate.Snapshot.ExitCode);
    }

    [EngineFact]
    public async Task Migrate_applied_every_migration_on_the_primary_and_the_schema_reached_the_replica()
    {
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await primary.OpenAsync();
        var applied = await Sql.ColumnAsync<string>(primary, "SELECT name FROM public.schema_history WHERE type = 0 AND success ORDER BY version::int");
        Assert.Equal(SchemaMigrator.EmbeddedMigrations(), applied);
        Assert.Equal(16, await ScalarAsync<long>(primary, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_active'::regclass"));

        await using var replica = new NpgsqlConnection(await App.GetConnectionStringAsync("todos-replica"));
        await replica.OpenAsync();
        using var cts = new CancellationTokenSource(Timeout);
        while (await ScalarAsync<long>(replica, "SELECT count(*) FROM pg_class WHERE relname LIKE 'todos_active_p%' AND relkind = 'r'") < 16)
        {
            await Task.Delay(100, cts.Token);
        }
    }

    [EngineFact]
    public async Task A_token_from_the_token_verb_is_accepted_and_anything_else_gets_a_401_problem()
    {
        var key = await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"));
        var user = Guid.CreateVersion7();
        var (exitCode, token) = await OperatorCli.RunAsync(["token", "--user", user.ToString(), "--admin"], null, ("Auth__SigningKey", key));
        Assert.True(exitCode == 0, token);

        using var http = App.CreateHttpClient("api", "http");
        using var cts = new CancellationTokenSource(Timeout);
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/api/me") { Headers = { { "Authorization", $"Bearer {token.Trim()}" } } })
        using (var response = await http.SendAsync(request, cts.Token))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            using var me = JsonDocument.Parse(await response.Content.ReadAsStringAsync(cts.Token));
            Assert.Equal(user, me.RootElement.GetProperty("userId").GetGuid());
            Assert.True(me.RootElement.GetProperty("admin").GetBoolean());
        }

        var auth = new TodoScale.ServiceDefaults.Auth.AuthOptions { SigningKey = key };
        var forged = TodoScale.ServiceDefaults.Auth.TodoScaleTokens.Create(
            new() { SigningKey = new string('7', 64) }, user, admin: true, DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        var expired = TodoScale.ServiceDefaults.Auth.TodoScaleTokens.Create(auth, user, admin: false, DateTimeOffset.UtcNow.AddHours(-2), TimeSpan.FromHours(1));
        foreach (var bad in new[] { null, forged, expired, "not.a.token" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/me");
            if (bad is not null)
            {
                request.Headers.Add("Authorization", $"Bearer {bad}");
            }

            using var response = await http.SendAsync(request, cts.Token);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        }
    }

    [EngineTheory]
    [InlineData("api")]
    [InlineData("archiver")]
    public async Task Service_answers_health_with_200_and_metrics_with_prometheus_text(string service)
    {
        using var http = App.CreateHttpClient(service, "http");
        using var cts = new CancellationTokenSource(Timeout);

        using var health = await http.GetAsync("/health", cts.Token);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal("Healthy", await health.Content.ReadAsStringAsync(cts.Token));

        using var metrics = await http.GetAsync("/metrics", cts.Token);
        Assert.Equal(HttpStatusCode.OK, metrics.StatusCode);
        Assert.StartsWith("text/plain", metrics.Content.Headers.ContentType?.MediaType);
        var text = await metrics.Content.ReadAsStringAsync(cts.Token);
        Assert.Contains("# TYPE ", text);
        Assert.Contains($"service_name=\"{service}\"", text);
        // The request just made to /health is counted: the exporter serves live instruments, not a fixed page.
        Assert.Contains("http_server_request_duration_seconds_bucket", text);
    }

    [EngineFact]
    public async Task Replica_is_in_recovery_and_a_primary_write_is_readable_on_it_within_5_seconds()
    {
        var table = $"replication_probe_{Guid.NewGuid():N}";
        var id = Guid.CreateVersion7();
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await using var replica = new NpgsqlConnection(await App.GetConnectionStringAsync("todos-replica"));
        await primary.OpenAsync();
        await replica.OpenAsync();

        Assert.True(await ScalarAsync<bool>(replica, "SELECT pg_is_in_recovery()"));
        Assert.False(await ScalarAsync<bool>(primary, "SELECT pg_is_in_recovery()"));
        Assert.Equal("streaming", await ScalarAsync<string>(replica, "SELECT status FROM pg_stat_wal_receiver"));

        try
        {
            await ScalarAsync<int>(primary, $"CREATE TABLE {table} (id uuid PRIMARY KEY); SELECT 1");
            await using (var insert = new NpgsqlCommand($"INSERT INTO {table} (id) VALUES ($1)", primary) { Parameters = { new() { Value = id } } })
            {
                await insert.ExecuteNonQueryAsync();
            }

            await Eventually.TrueAsync("the row written on the primary on the replica", async () =>
                await ScalarAsync<bool>(replica, $"SELECT to_regclass('{table}') IS NOT NULL")
                && await ScalarAsync<long>(replica, $"SELECT count(*) FROM {table} WHERE id = '{id}'") == 1, TimeSpan.FromSeconds(5));
            // A write on a hot standby must be refused: it really is the read replica, not a second primary.
            var refused = await Assert.ThrowsAsync<PostgresException>(() => ScalarAsync<int>(replica, $"INSERT INTO {table} (id) VALUES (gen_random_uuid()); SELECT 1"));
            Assert.Equal(PostgresErrorCodes.ReadOnlySqlTransaction, refused.SqlState);
        }
        finally
        {
            await ScalarAsync<int>(primary, $"DROP TABLE IF EXISTS {table}; SELECT 1");
        }
    }

    [EngineFact]
    public async Task The_replica_streams_through_a_physical_slot_whose_wal_the_primary_keeps_up_to_the_setting()
    {
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await primary.OpenAsync();
        await Eventually.TrueAsync("the replica streaming through its slot", async () =>
            await ScalarAsync<bool>(primary, "SELECT coalesce((SELECT active FROM pg_replication_slots WHERE slot_name = 'todos_replica'), false)"),
            TimeSpan.FromSeconds(60));
        Assert.Equal("physical", await ScalarAsync<string>(primary, "SELECT slot_type::text FROM pg_replication_slots WHERE slot_name = 'todos_replica'"));
        Assert.Equal("todos_replica", await ScalarAsync<string>(primary, "SELECT application_name FROM pg_stat_replication s JOIN pg_replication_slots r ON r.active_pid = s.pid"));
        Assert.Equal("4GB", await ScalarAsync<string>(primary, "SHOW max_slot_wal_keep_size"));
        // Full-page images compressed on both servers (the archiver's moves are mostly images of the pages they touch).
        await using var replica = new NpgsqlConnection(await App.GetConnectionStringAsync("todos-replica"));
        await replica.OpenAsync();
        Assert.Equal(["lz4", "lz4"], [await ScalarAsync<string>(primary, "SHOW wal_compression"), await ScalarAsync<string>(replica, "SHOW wal_compression")]);
    }

    [EngineFact]
    public async Task Redis_answers_ping_through_the_cache_connection_string()
    {
        var options = ConfigurationOptions.Parse(await App.GetConnectionStringAsync("cache") ?? throw new InvalidOperationException("no cache connection string"));
        options.AbortOnConnectFail = true;
        await using var redis = await ConnectionMultiplexer.ConnectAsync(options);
        var latency = await redis.GetDatabase().PingAsync();
        Assert.True(latency < TimeSpan.FromSeconds(5));

        var key = $"probe:{Guid.NewGuid():N}";
        await redis.GetDatabase().StringSetAsync(key, "1", TimeSpan.FromSeconds(30));
        Assert.Equal("1", (string?)await redis.GetDatabase().StringGetAsync(key));
    }

    [EngineFact]
    public async Task Prometheus_lists_every_target_as_up_the_services_both_postgres_exporters_alertmanager_and_itself()
    {
        string[] expected = ["alertmanager", "api", "archiver", "postgres/primary", "postgres/replica", "prometheus"];
        using var http = App.CreateHttpClient("prometheus", "http");
        var clock = Stopwatch.StartNew();
        Dictionary<string, string> health = [];
        while (clock.Elapsed < Timeout)
        {
            using var document = JsonDocument.Parse(await http.GetStringAsync("/api/v1/targets"));
            health = document.RootElement.GetProperty("data").GetProperty("activeTargets").EnumerateArray()
                .ToDictionary(
                    t => t.GetProperty("labels") is var labels && labels.TryGetProperty("role", out var role)
                        ? $"{labels.GetProperty("job").GetString()}/{role.GetString()}"
                        : labels.GetProperty("job").GetString()!,
                    t => t.GetProperty("health").GetString()!);
            if (expected.All(job => health.GetValueOrDefault(job) == "up"))
            {
                break;
            }

            await Task.Delay(500);
        }

        Assert.Equal(expected, health.Keys.Order());
        Assert.All(expected, job => Assert.Equal((job, "up"), (job, health[job])));
    }

    [EngineFact]
    public async Task Postgres_exporters_report_connections_database_size_and_a_measured_replay_lag()
    {
        using var http = App.CreateHttpClient("prometheus", "http");
        string[] queries =
        [
            """pg_up{job="postgres"} == 1""",
            """pg_stat_database_numbackends{job="postgres", datname="todos"} > 0""",
            """pg_database_size_bytes{job="postgres", role="primary", datname="todos"} > 1000000""",
            """pg_replica_replay_lag_seconds{job="postgres", role="primary", application_name="todos_replica"} >= 0""",
            """pg_replicas_streaming{job="postgres", role="primary"} == 1""",
            """pg_replication_slot_active{job="postgres", role="primary", slot_name="todos_replica"} == 1""",
            """pg_replication_slot_safe_wal_size_bytes{job="postgres", role="primary", slot_name="todos_replica"} > 0""",
        ];
        var counts = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        do
        {
            foreach (var query in queries)
            {
                using var document = JsonDocument.Parse(await http.GetStringAsync($"/api/v1/query?query={Uri.EscapeDataString(query)}"));
                counts[query] = document.RootElement.GetProperty("data").GetProperty("result").GetArrayLength();
            }

            if (counts[queries[0]] == 2 && counts[queries[1]] == 2 && counts.Values.All(c => c > 0))
            {
                break;
            }

            await Task.Delay(500);
        }
        while (clock.Elapsed < Timeout);

        Assert.Equal(2, counts[queries[0]]); // the primary and the replica are reachable
        Assert.Equal(2, counts[queries[1]]); // the services hold connections to both
        Assert.All(queries.Skip(2), query => Assert.True(counts[query] == 1, $"{query}: {counts[query]} series"));
    }

    [EngineFact]
    public async Task Prometheus_loaded_every_rule_in_the_rule_files_and_evaluates_them_without_errors()
    {
        using var http = App.CreateHttpClient("prometheus", "http");
        var expected = RuleFiles.Alerts(RepositoryPaths.Dashboards).Select(a => a.Name)
            .Concat(RuleFiles.Recorded(RepositoryPaths.Dashboards)).Order().ToList();
        List<(string Name, string Health)> loaded = [];
        var clock = Stopwatch.StartNew();
        do
        {
            using var document = JsonDocument.Parse(await http.GetStringAsync("/api/v1/rules"));
            loaded = [.. document.RootElement.GetProperty("data").GetProperty("groups").EnumerateArray()
                .SelectMany(g => g.GetProperty("rules").EnumerateArray())
                .Select(r => (r.GetProperty("name").GetString()!, r.GetProperty("health").GetString()!))];
            if (loaded.All(r => r.Health == "ok") && loaded.Count == expected.Count)
            {
                break;
            }

            await Task.Delay(500);
        }
        while (clock.Elapsed < Timeout);

        Assert.Equal(expected, loaded.Select(r => r.Name).Order());
        Assert.All(loaded, r => Assert.True(r.Health == "ok", $"{r.Name}: {r.Health}"));
    }

    private static Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql) => Sql.ScalarAsync<T>(connection, sql);
}

/// <summary>
/// Dashboards and alerts query only names the live services really expose, and every panel returns a series: on one
/// PostgreSQL and on Citus (the same services; the partitions' gauges are the shards' there).
/// </summary>
public abstract class DashboardQueryTests(AppHostFixture fixture)
{
    /// <summary>Whether the stack takes backups (process mode on PostgreSQL); elsewhere no todoscale_backup_* series exists.</summary>
    protected virtual bool HasBackups => true;

    private bool Applies(string expressionOrName) => HasBackups || !expressionOrName.Contains("todoscale_backup_", StringComparison.Ordinal);

    [EngineFact]
    public async Task Every_metric_the_dashboards_and_rules_query_is_exposed_by_a_live_service()
    {
        // Some API traffic and an archive pass that moves a row, so every instrument has recorded something.
        using (var api = ApiClient.ForNewUser(fixture))
        {
            await api.CreateTodoAsync("seen by the metrics");
            await api.GetAsync("/api/todos");
        }

        await using (var primary = new Npgsql.NpgsqlConnection(await fixture.App.GetConnectionStringAsync("todos")))
        {
            await primary.OpenAsync();
            var id = Guid.CreateVersion7();
            await Sql.ExecuteAsync(primary,
                $"INSERT INTO todos_active (id, user_id, title, status, completed_at) VALUES ('{id}', '{Guid.CreateVersion7()}', 'old', 'done', now() - interval '90 days')");
            var command = await fixture.App.Services.GetRequiredService<ResourceCommandService>().ExecuteCommandAsync("archiver", "run-archive");
            Assert.True(command.Success, command.Message);
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            while (await Sql.ScalarAsync<long>(primary, $"SELECT count(*) FROM todos_archived WHERE id = '{id}'") == 0)
            {
                await Task.Delay(100, cts.Token);
            }
        }

        var dashboards = RepositoryPaths.Dashboards;
        var queried = GrafanaQueries.Expressions(dashboards).Concat(RuleFiles.Expressions(dashboards))
            .SelectMany(PromQl.MetricNames)
            .Where(name => !PromQl.Synthetic.Contains(name))
            .Except(RuleFiles.Recorded(dashboards))
            .Where(Applies)
            .ToHashSet();
        Assert.NotEmpty(queried);
        Assert.Contains("http_server_request_duration_seconds_bucket", queried); // the extraction really finds names

        // What the services expose, read until every queried name is there or a minute has passed (the archiver's
        // gauges appear after its first statistics refresh, which on a cluster just started may not have happened).
        var missing = queried.ToList();
        var reading = Stopwatch.StartNew();
        while (missing.Count > 0 && reading.Elapsed < TimeSpan.FromSeconds(60))
        {
            var exposed = new HashSet<string>();
            foreach (var service in new[] { "api", "archiver", "postgres-exporter", "postgres-exporter-replica" })
            {
                using var http = fixture.App.CreateHttpClient(service, "http");
                await http.GetAsync("/health"); // so request and database instruments have recorded something
                var text = await http.GetStringAsync("/metrics");
                foreach (var line in text.Split('\n').Where(l => l.Length > 0 && l[0] != '#'))
                {
                    exposed.Add(line[..line.IndexOfAny(['{', ' '])]);
                }
            }

            missing = [.. queried.Where(name => !exposed.Contains(name)).Order()];
            if (missing.Count > 0)
            {
                await Task.Delay(1000);
            }
        }

        Assert.True(missing.Count == 0, $"queried but not exposed by any service: {string.Join(", ", missing)}");

        // Every panel's query parses (a syntax error is a 400 from Prometheus) and, once Prometheus has scraped the
        // traffic above and evaluated the recording rules, returns at least one series.
        using var prometheus = fixture.App.CreateHttpClient("prometheus", "http");
        var panels = GrafanaQueries.Expressions(dashboards).Where(Applies).Distinct().ToList();
        var empty = panels;
        var clock = Stopwatch.StartNew();
        while (empty.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(90))
        {
            var stillEmpty = new List<string>();
            foreach (var expression in empty)
            {
                // Grafana's own interval variables, as Grafana would fill them in.
                var query = expression.Replace("$__rate_interval", "1m", StringComparison.Ordinal)
                    .Replace("$__interval", "15s", StringComparison.Ordinal).Replace("$__range", "1h", StringComparison.Ordinal);
                using var response = await prometheus.GetAsync($"/api/v1/query?query={Uri.EscapeDataString(query)}");
                var body = await response.Content.ReadAsStringAsync();
                Assert.True(response.IsSuccessStatusCode, $"{expression}: {body}");
                using var document = JsonDocument.Parse(body);
                if (document.RootElement.GetProperty("data").GetProperty("result").GetArrayLength() == 0)
                {
                    stillEmpty.Add(expression);
                }
            }

            empty = stillEmpty;
            if (empty.Count > 0)
            {
                await Task.Delay(1000);
            }
        }

        Assert.True(empty.Count == 0, $"panels without a series: {string.Join(" | ", empty)}");
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class DashboardQueryTestsOnPostgres(AppHostFixture fixture) : DashboardQueryTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(CitusAppHostCollection.Name)]
[NeedsCitus]
public sealed class DashboardQueryTestsOnCitus(CitusAppHostFixture fixture) : DashboardQueryTests(fixture)
{
    protected override bool HasBackups => false; // not offered on Citus (README, "Backups and point-in-time recovery")
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class AppHostTestsInProcessMode(AppHostFixture fixture) : AppHostTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(ContainerAppHostCollection.Name)]
[NeedsContainerEngine]
public sealed class AppHostTestsInContainerMode(ContainerAppHostFixture fixture) : AppHostTests(fixture);
