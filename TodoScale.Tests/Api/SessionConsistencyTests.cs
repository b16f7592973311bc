using Aspire.Hosting.Testing;
using Npgsql;
using StackExchange.Redis;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>
/// TodoScale-Session (session consistency carried by the client) against the real stack and a second API instance
/// that never saw the write: the client's position alone sends its reads past a replica whose replay is paused, and
/// such reads ask Redis nothing (counted in Redis' own command statistics).
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class SessionConsistencyTests(AppHostFixture fixture)
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task A_client_carrying_its_session_reads_its_write_on_another_instance_with_no_redis_round_trip()
    {
        // The second instance keeps no page cache, so its reads have nothing to look up in Redis but the position; and
        // no lag limit to speak of, so its routing turns on positions alone: the paused replica's growing lag (which
        // would send every read to the primary after a second, sooner or later on a loaded machine) plays no part.
        await using var second = await SecondApi.StartAsync(fixture, ("Cache__Enabled", "false"), ("Reads__ReplicaLagLimit", "01:00:00"));
        using var writer = ApiClient.ForNewUser(fixture);
        var created = (await writer.PostAsync("/api/todos", new { title = "first" })).Is(Created);
        var first = created.Body!["id"]!.GetValue<Guid>();
        Assert.Matches("^[0-9A-F]+/[0-9A-F]+$", created.Session);

        using var reader = ApiClient.ForUserAt(second.Address, fixture.DataRoot, writer.UserId);
        reader.Session = created.Session;
        await Eventually.TrueAsync("the second instance reading from the replica", async () => (await reader.GetAsync("/api/todos")).ReadSource == "replica", Patience);

        await using var redis = await fixture.CacheAdminAsync();
        var server = redis.GetServer(redis.GetEndPoints().Single());
        // Unpooled: another test of the collection restarts the replica, which would leave a pooled connection dead.
        await using var replica = new NpgsqlConnection(await fixture.App.GetConnectionStringAsync("todos-replica") + ";Pooling=false");
        await replica.OpenAsync();
        await Sql.ExecuteAsync(replica, "SELECT pg_wal_replay_pause()");
        try
        {
            var wrote = (await writer.PostAsync("/api/todos", new { title = "second" })).Is(Created);
            var newer = wrote.Body!["id"]!.GetValue<Guid>();
            Assert.NotEqual(created.Session, wrote.Session);
            // The user's position in Redis is gone: only what the client carries can route the next read.
            await redis.GetDatabase().KeyDeleteAsync($"todoscale:{{u:{writer.UserId:N}}}:lsn");
            var redisReads = await RedisReadsAsync(server);

            // The control: carrying the position from before the write, the read goes where that allows, and misses it.
            var behind = (await reader.GetAsync("/api/todos")).Is(OK);
            Assert.Equal("replica", behind.ReadSource);
            Assert.Equal([first], behind.ItemIds);

            reader.Session = wrote.Session;
            for (var i = 0; i < 20; i++)
            {
                var read = (await reader.GetAsync("/api/todos")).Is(OK);
                Assert.Equal("primary", read.ReadSource);
                Assert.Equal([newer, first], read.ItemIds);
                Assert.Equal(wrote.Session, read.Session);
            }

            Assert.Equal(redisReads, await RedisReadsAsync(server));
            Assert.Equal(0L, await Sql.ScalarAsync<long>(replica, $"SELECT count(*) FROM todos_active WHERE id = '{newer}'"));
        }
        finally
        {
            await Sql.ExecuteAsync(replica, "SELECT pg_wal_replay_resume()");
        }

        await Eventually.TrueAsync("reads with the session back on the replica", async () =>
        {
            var read = (await reader.GetAsync("/api/todos")).Is(OK);
            return read.ReadSource == "replica" && read.ItemIds.Count == 2;
        }, Patience);
    }

    [Fact]
    public async Task Every_read_and_write_answers_with_the_session_and_a_malformed_one_is_a_400()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var fresh = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal("0/0", fresh.Session); // no write yet: any replica within the lag limit will do

        var wrote = (await api.PostAsync("/api/todos", new { title = "one" })).Is(Created);
        Assert.NotEqual("0/0", wrote.Session);
        var read = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal(wrote.Session, read.Session); // without the header, Redis (or this instance) knows the write

        foreach (var bad in new[] { "yesterday", "0/0, 0/1", "-1/5", "1/" })
        {
            api.Session = bad;
            var refused = (await api.GetAsync("/api/todos")).IsProblem(BadRequest);
            Assert.Contains("TodoScale-Session", refused.Text);
        }
    }

    /// <summary>Redis' count of the read commands the API's routing and cache use, over all clients.</summary>
    private static async Task<long> RedisReadsAsync(IServer server)
    {
        var stats = await server.InfoAsync("commandstats");
        return stats.SelectMany(group => group)
            .Where(pair => pair.Key is "cmdstat_get" or "cmdstat_hget" or "cmdstat_mget" or "cmdstat_evalsha" or "cmdstat_eval")
            .Sum(pair => long.Parse(pair.Value.Split(',')[0]["calls=".Length..], System.Globalization.CultureInfo.InvariantCulture));
    }
}
