using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using StackExchange.Redis;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>
/// Reads that scale, against the real primary, replica and Redis of the AppHost: read-your-writes while the
/// replica's replay is paused, the replica stopped, Redis unreachable (keeping its data) and Redis stopped.
/// Each test puts back what it broke and waits until the API reports Healthy again.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class ReadRoutingAndCacheTests(AppHostFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task With_replay_paused_every_read_sees_the_users_write_and_reads_return_to_the_replica_after_resume()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var first = await api.CreateTodoAsync("first");
        await Eventually.TrueAsync("a read served by the replica", async () => (await api.GetAsync($"/api/todos/{first}")).ReadSource == "replica", Patience);

        // Unpooled: another test of the collection restarts the replica, which would leave a pooled connection dead.
        await using var replica = new NpgsqlConnection(await fixture.App.GetConnectionStringAsync("todos-replica") + ";Pooling=false");
        await replica.OpenAsync();
        await Sql.ExecuteAsync(replica, "SELECT pg_wal_replay_pause()");
        Guid second;
        try
        {
            second = await api.CreateTodoAsync("second");
            var sources = new List<string?>();
            for (var i = 0; i < 100; i++)
            {
                var read = (await api.GetAsync($"/api/todos/{second}")).Is(OK);
                Assert.Equal("second", read.Body!["title"]!.GetValue<string>());
                sources.Add(read.ReadSource);
                var list = (await api.GetAsync("/api/todos")).Is(OK);
                Assert.Equal([second, first], list.ItemIds);
            }

            Assert.All(sources, source => Assert.Equal("primary", source));
            // The replica really is behind: without routing, these reads would have missed the write.
            Assert.Equal(0L, await Sql.ScalarAsync<long>(replica, $"SELECT count(*) FROM todos_active WHERE id = '{second}'"));
        }
        finally
        {
            await Sql.ExecuteAsync(replica, "SELECT pg_wal_replay_resume()");
        }

        await Eventually.TrueAsync("reads back on the replica", async () => (await api.GetAsync($"/api/todos/{second}")).ReadSource == "replica", Patience);
        var metrics = await MetricsAsync();
        Assert.Matches("todoscale_api_reads_routed_total\\{[^}]*reason=\"replica_(behind|lagging)\"[^}]*target=\"primary\"", metrics);
        Assert.Matches("todoscale_api_reads_routed_total\\{[^}]*target=\"replica\"", metrics);
        Assert.Matches("todoscale_api_db_query_duration_seconds_bucket\\{[^}]*operation=\"get_todo\",partition=\"\\d\\d\",table=\"todos_active\",target=\"replica\"", metrics);
    }

    [Fact]
    public async Task With_the_replica_stopped_reads_go_to_the_primary_without_errors()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var id = await api.CreateTodoAsync("survives a replica outage");
        var commands = fixture.App.Services.GetRequiredService<ResourceCommandService>();
        var stopped = await commands.ExecuteCommandAsync("todos-replica", KnownResourceCommands.StopCommand);
        Assert.True(stopped.Success, stopped.Message);
        try
        {
            for (var i = 0; i < 20; i++)
            {
                var read = (await api.GetAsync($"/api/todos/{id}")).Is(OK);
                Assert.Equal("survives a replica outage", read.Body!["title"]!.GetValue<string>());
                (await api.GetAsync("/api/todos?sort=due")).Is(OK);
            }

            await Eventually.TrueAsync("the API reporting Degraded", async () => await HealthAsync() == "Degraded", Patience);
            Assert.Equal("primary", (await api.GetAsync($"/api/todos/{id}")).ReadSource);
        }
        finally
        {
            var started = await commands.ExecuteCommandAsync("todos-replica", KnownResourceCommands.StartCommand);
            Assert.True(started.Success, started.Message);
        }

        await Eventually.TrueAsync("the API reporting Healthy", async () => await HealthAsync() == "Healthy", Patience);
        await Eventually.TrueAsync("reads back on the replica", async () => (await api.GetAsync($"/api/todos/{id}")).ReadSource == "replica", Patience);
    }

    [Fact]
    public async Task Redis_unreachable_requests_succeed_and_a_page_cached_before_is_never_served_after_a_write_during_the_outage()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var id = await api.CreateTodoAsync("before");
        await Eventually.TrueAsync("the first page cached", async () => (await api.GetAsync("/api/todos")).ReadSource == "cache", Patience);

        await using var redis = await fixture.CacheAdminAsync();
        var password = ConfigurationOptions.Parse(redis.Configuration).Password!;
        var server = redis.GetServer(redis.GetEndPoints().Single());
        var pages = (RedisKey)$"todoscale:{{u:{api.UserId:N}}}:pages";
        Assert.True(await redis.GetDatabase().KeyExistsAsync(pages));

        // Redis keeps running with its data, but the API can no longer get in: its connections are dropped and
        // its password no longer works.
        await server.ExecuteAsync("CONFIG", "SET", "requirepass", $"changed-{Guid.NewGuid():N}");
        await server.ExecuteAsync("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes");
        try
        {
            await Eventually.TrueAsync("the API reporting Degraded", async () => await HealthAsync() == "Degraded", Patience);
            var during = (await api.GetAsync("/api/todos")).Is(OK);
            Assert.NotEqual("cache", during.ReadSource);
            (await api.PatchAsync($"/api/todos/{id}", new { title = "after" })).Is(OK);
            var read = (await api.GetAsync("/api/todos")).Is(OK);
            Assert.Equal("after", read.Items.Single()!["title"]!.GetValue<string>());
            Assert.Equal("primary", read.ReadSource);
            // The page cached before the outage is still in Redis: only the API's bookkeeping can keep it out.
            Assert.True(await redis.GetDatabase().KeyExistsAsync(pages));
        }
        finally
        {
            await server.ExecuteAsync("CONFIG", "SET", "requirepass", password);
        }

        await Eventually.TrueAsync("the API reporting Healthy", async () => await HealthAsync() == "Healthy", Patience);
        var back = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal("after", back.Items.Single()!["title"]!.GetValue<string>());
        Assert.NotEqual("cache", back.ReadSource);
        var cached = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal("cache", cached.ReadSource);
        Assert.Equal("after", cached.Items.Single()!["title"]!.GetValue<string>());
    }

    [Fact]
    public async Task Redis_stopped_requests_succeed_and_after_it_is_back_no_page_is_stale()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var id = await api.CreateTodoAsync("v1");
        await Eventually.TrueAsync("the first page cached", async () => (await api.GetAsync("/api/todos")).ReadSource == "cache", Patience);

        var commands = fixture.App.Services.GetRequiredService<ResourceCommandService>();
        var stopped = await commands.ExecuteCommandAsync("cache", KnownResourceCommands.StopCommand);
        Assert.True(stopped.Success, stopped.Message);
        try
        {
            await Eventually.TrueAsync("the API reporting Degraded", async () => await HealthAsync() == "Degraded", Patience);
            for (var i = 2; i <= 5; i++)
            {
                (await api.PatchAsync($"/api/todos/{id}", new { title = $"v{i}" })).Is(OK);
                var read = (await api.GetAsync("/api/todos")).Is(OK);
                Assert.Equal($"v{i}", read.Items.Single()!["title"]!.GetValue<string>());
                (await api.GetAsync($"/api/todos/{id}")).Is(OK);
            }
        }
        finally
        {
            var started = await commands.ExecuteCommandAsync("cache", KnownResourceCommands.StartCommand);
            Assert.True(started.Success, started.Message);
        }

        await Eventually.TrueAsync("the API reporting Healthy", async () => await HealthAsync() == "Healthy", Patience);
        (await api.PatchAsync($"/api/todos/{id}", new { title = "v6" })).Is(OK);
        for (var i = 0; i < 3; i++)
        {
            Assert.Equal("v6", (await api.GetAsync("/api/todos")).Is(OK).Items.Single()!["title"]!.GetValue<string>());
        }
    }

    [Fact]
    public async Task Operators_see_the_routing_state_with_an_admin_token_and_users_get_403()
    {
        using var user = ApiClient.ForNewUser(fixture);
        (await user.GetAsync("/api/admin/reads")).IsProblem(Forbidden);
        using var admin = ApiClient.ForNewUser(fixture, admin: true);
        await Eventually.TrueAsync("the replica up", async () => (await admin.GetAsync("/api/admin/reads")).Is(OK).Body!["replicaUp"]!.GetValue<bool>(), Patience);
        var status = (await admin.GetAsync("/api/admin/reads")).Is(OK).Body!;
        Assert.True(status["redisConnected"]!.GetValue<bool>());
        Assert.Equal(16, status["activePartitions"]!.GetValue<int>());
        Assert.Equal(5, status["maxDepth"]!.GetValue<int>());
        Assert.Matches("^[0-9A-F]+/[0-9A-F]+$", status["replicaReplayLsn"]!.GetValue<string>());
    }

    private async Task<string> HealthAsync()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        using var response = await http.GetAsync("/health");
        return await response.Content.ReadAsStringAsync();
    }

    private async Task<string> MetricsAsync()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        return await http.GetStringAsync("/metrics");
    }
}
