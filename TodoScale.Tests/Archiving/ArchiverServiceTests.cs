using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Archiving;

/// <summary>The archiver worker (`serve`) inside the started AppHost.</summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class ArchiverServiceTests(AppHostFixture fixture)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private DistributedApplication App => fixture.App;

    private static Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql) => Sql.ScalarAsync<T>(connection, sql);

    [Fact]
    public async Task The_run_archive_now_command_makes_the_archiver_run_a_pass()
    {
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await primary.OpenAsync();
        var user = Guid.CreateVersion7();
        var id = Guid.CreateVersion7();
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO todos_active (id, user_id, title, status, completed_at) VALUES ($1, $2, 'long done', 'done', now() - interval '90 days')", primary)
            { Parameters = { new() { Value = id }, new() { Value = user } } })
        {
            await insert.ExecuteNonQueryAsync();
        }

        var result = await App.Services.GetRequiredService<ResourceCommandService>().ExecuteCommandAsync("archiver", "run-archive");
        Assert.True(result.Success, result.Message);

        using var cts = new CancellationTokenSource(Timeout);
        while (await ScalarAsync<long>(primary, $"SELECT count(*) FROM todos_archived WHERE id = '{id}'") == 0)
        {
            await Task.Delay(100, cts.Token);
        }

        Assert.Equal(0L, await ScalarAsync<long>(primary, $"SELECT count(*) FROM todos_active WHERE id = '{id}'"));
        while (await ScalarAsync<long>(primary, "SELECT count(*) FROM audit_log WHERE action = 'archive.pass' AND actor = 'run-now'") == 0)
        {
            await Task.Delay(100, cts.Token);
        }
    }

    [Fact]
    public async Task The_partition_gauges_show_every_partition_and_follow_inserts_at_the_next_refresh()
    {
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await primary.OpenAsync();
        var user = Guid.CreateVersion7();
        var partition = TodoScale.Data.Partitioning.PartitionHash.PartitionIndex(user, 16).ToString("00", System.Globalization.CultureInfo.InvariantCulture);
        using var http = App.CreateHttpClient("archiver", "http");
        var before = Gauge(await http.GetStringAsync("/metrics"), "todoscale_partition_rows", partition);

        await using (var insert = new NpgsqlCommand(
            $"INSERT INTO todos_active (id, user_id, title, status) SELECT gen_random_uuid(), '{user}', 'gauge ' || g, 'todo' FROM generate_series(1, 500) g", primary))
        {
            await insert.ExecuteNonQueryAsync();
        }

        using var cts = new CancellationTokenSource(Timeout);
        string metrics;
        do
        {
            await Task.Delay(250, cts.Token);
            metrics = await http.GetStringAsync("/metrics", cts.Token);
        }
        while (Gauge(metrics, "todoscale_partition_rows", partition) < before + 500);

        foreach (var name in new[] { "todoscale_partition_rows", "todoscale_partition_size_bytes", "todoscale_archive_backlog" })
        {
            Assert.Equal(16, metrics.Split('\n').Count(l => l.StartsWith(name + "{", StringComparison.Ordinal) && l.Contains("table=\"todos_active\"", StringComparison.Ordinal)));
        }

        Assert.True(Gauge(metrics, "todoscale_partition_size_bytes", partition) > 0);
        var lines = metrics.Split('\n');
        Assert.Contains(lines, l => l.StartsWith("todoscale_archive_months_ahead{", StringComparison.Ordinal) && l.Contains("table=\"todos_archived\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("todoscale_archive_month_rows{", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("todoscale_cold_months{", StringComparison.Ordinal));
    }

    /// <summary>The value of a todos_active partition's series in Prometheus text (-1 when absent).</summary>
    private static double Gauge(string metrics, string name, string partition) =>
        metrics.Split('\n')
            .Where(l => l.StartsWith(name + "{", StringComparison.Ordinal)
                        && l.Contains($"partition=\"{partition}\"", StringComparison.Ordinal)
                        && l.Contains("table=\"todos_active\"", StringComparison.Ordinal))
            .Select(l => double.Parse(l.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture))
            .DefaultIfEmpty(-1)
            .Single();
}
