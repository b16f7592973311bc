using System.Diagnostics;
using System.Text.Json;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Data.Partitioning;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Dashboards;

/// <summary>
/// End to end: heavy tenants that PartitionHash places in one partition (on Citus: in one shard, by Citus' own hash)
/// make the archiver's gauges, Prometheus' recording rule and the TodoScalePartitionSkew alert say so, and
/// Alertmanager delivers it to the webhook receiver (the archiver's POST /alerts) until a silence made through its
/// API stops it. The AppHost runs with Infra:AlertFor=2s (the rule file keeps its 15 minutes), 1 s scrapes and
/// Infra:AlertRepeatInterval=2s; the archiver refreshes its gauges every second. The same test on both engines.
/// </summary>
public abstract class SkewAlertTests(AppHostFixture fixture, ITestOutputHelper output)
{
    private const int HeavyPartition = 5;

    [EngineFact]
    public async Task Heavy_tenants_in_one_partition_make_the_skew_alert_fire()
    {
        var connectionString = (await fixture.App.GetConnectionStringAsync("todos"))!;
        var citus = await Sql.ScalarAsync<bool>(connectionString, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')");
        var shardMinValues = citus
            ? await Sql.ColumnAsync<int>(connectionString, "SELECT shardminvalue::int FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass ORDER BY 1")
            : [];
        var users = new List<Guid>();
        while (users.Count < 20)
        {
            var user = Guid.CreateVersion7();
            if ((citus ? PartitionHash.ShardIndex(user, shardMinValues) : PartitionHash.PartitionIndex(user, 16)) == HeavyPartition)
            {
                users.Add(user);
            }
        }

        await using var primary = new NpgsqlConnection(connectionString);
        await primary.OpenAsync();
        try
        {
            await using (var insert = new NpgsqlCommand(
                "INSERT INTO todos_active (id, user_id, title, status) SELECT gen_random_uuid(), u, 'heavy ' || g, 'todo' FROM unnest(@users) u, generate_series(1, 1000) g",
                primary))
            {
                insert.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. users] });
                await insert.ExecuteNonQueryAsync();
            }

            // They are where the C# hash says: one partition here, on Citus the shard at that place in hash order.
            Assert.Equal(citus ? $"{HeavyPartition}" : $"todos_active_p{HeavyPartition:00}", await Sql.ScalarAsync<string>(primary, citus
                ? $"SELECT (SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass AND shardminvalue::int < s.shardminvalue::int)::text FROM pg_dist_shard s WHERE s.shardid = get_shard_id_for_distribution_column('todos_active', '{users[0]}')"
                : $"SELECT tableoid::regclass::text FROM todos_active WHERE user_id = '{users[0]}' LIMIT 1"));

            using var prometheus = fixture.App.CreateHttpClient("prometheus", "http");
            var clock = Stopwatch.StartNew();
            string state = "inactive";
            double skew = 0;
            while (clock.Elapsed < TimeSpan.FromSeconds(90))
            {
                using (var ratio = JsonDocument.Parse(await prometheus.GetStringAsync(
                    "/api/v1/query?query=" + Uri.EscapeDataString("todoscale:partition_skew:ratio{table=\"todos_active\"}"))))
                {
                    skew = ratio.RootElement.GetProperty("data").GetProperty("result").EnumerateArray()
                        .Select(r => double.Parse(r.GetProperty("value")[1].GetString()!, System.Globalization.CultureInfo.InvariantCulture))
                        .DefaultIfEmpty(0).Single();
                }

                using var alerts = JsonDocument.Parse(await prometheus.GetStringAsync("/api/v1/alerts"));
                state = alerts.RootElement.GetProperty("data").GetProperty("alerts").EnumerateArray()
                    .Where(a => a.GetProperty("labels").GetProperty("alertname").GetString() == "TodoScalePartitionSkew")
                    .Select(a => a.GetProperty("state").GetString()!)
                    .DefaultIfEmpty("inactive").First();
                if (state == "firing")
                {
                    break;
                }

                await Task.Delay(500);
            }

            output.WriteLine($"TodoScalePartitionSkew {state} {clock.Elapsed.TotalSeconds:0.0} s after the insert; todos_active skew {skew:0.00}");
            Assert.True(state == "firing", $"TodoScalePartitionSkew is {state}; skew {skew:0.00}");
            Assert.True(skew > 1.5, $"skew {skew:0.00}");

            await DeliveredThenSilencedAsync();
        }
        finally
        {
            await using var delete = new NpgsqlCommand("DELETE FROM todos_active WHERE user_id = ANY(@users)", primary);
            delete.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. users] });
            await delete.ExecuteNonQueryAsync();
        }
    }

    /// <summary>
    /// The firing alert reaches the webhook with its labels, summary and runbook, and again at the repeat interval;
    /// once silenced through Alertmanager's API it is suppressed, and while a control alert is delivered three times
    /// (two repeat intervals) the skew alert is not delivered once.
    /// </summary>
    private async Task DeliveredThenSilencedAsync()
    {
        using var receiver = fixture.App.CreateHttpClient("archiver", "http");
        using var alertmanager = fixture.App.CreateHttpClient("alertmanager", "http");
        var skew = await Deliveries.WaitAsync(receiver, Skew, count: 2, TimeSpan.FromSeconds(60));
        var first = skew[0];
        output.WriteLine($"delivered to {first.Receiver}: {first.Alert}");
        Assert.Equal("todoscale-warning", first.Receiver);
        Assert.Equal("firing", first.Alert.GetProperty("status").GetString());
        var labels = first.Alert.GetProperty("labels");
        Assert.Equal("warning", labels.GetProperty("severity").GetString());
        Assert.Equal("partitions", labels.GetProperty("component").GetString());
        Assert.Equal("todos_active", labels.GetProperty("table").GetString());
        var annotations = first.Alert.GetProperty("annotations");
        Assert.StartsWith("todos_active partitions are skewed (", annotations.GetProperty("summary").GetString());
        Assert.Equal("dashboards/runbooks.md#todoscalepartitionskew", annotations.GetProperty("runbook_url").GetString());

        var silence = await Deliveries.SilenceAsync(alertmanager, Skew, "SkewAlertTests: the skew is known and handled");
        var control = $"TodoScaleDeliveryCheck{Guid.NewGuid():N}"[..40];
        try
        {
            // Suppressed, by that silence, as Alertmanager itself reports the alert.
            await Deliveries.WaitForStateAsync(alertmanager, Skew, "suppressed", silencedBy: silence, TimeSpan.FromSeconds(30));
            await Deliveries.PostAlertAsync(alertmanager, control, "warning", "tests", resolved: false);
            var controls = await Deliveries.WaitAsync(receiver, control, count: 3, TimeSpan.FromSeconds(60));
            var after = (await Deliveries.ReadAsync(receiver, Skew)).Where(d => d.ReceivedAt >= controls[0].ReceivedAt).ToList();
            output.WriteLine($"silence {silence}: control delivered {controls.Count} times from {controls[0].ReceivedAt:O} to {controls[^1].ReceivedAt:O}; skew deliveries since: {after.Count}");
            Assert.Empty(after);
        }
        finally
        {
            await Deliveries.PostAlertAsync(alertmanager, control, "warning", "tests", resolved: true);
            (await alertmanager.DeleteAsync($"/api/v2/silence/{silence}")).EnsureSuccessStatusCode();
        }
    }

    private const string Skew = "TodoScalePartitionSkew";
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class SkewAlertTestsOnPostgres(AppHostFixture fixture, ITestOutputHelper output) : SkewAlertTests(fixture, output);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(CitusAppHostCollection.Name)]
[NeedsCitus]
public sealed class SkewAlertTestsOnCitus(CitusAppHostFixture fixture, ITestOutputHelper output) : SkewAlertTests(fixture, output);
