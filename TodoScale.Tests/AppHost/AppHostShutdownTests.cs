using System.Diagnostics;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using Npgsql;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// Stops and restarts its own AppHost on one data root (the shared app must stay up for its collection):
/// nothing is left running after a stop, the clusters are clean, and the data and replication survive a restart.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
public sealed class AppHostShutdownTests
{
    [Fact]
    public async Task Stop_leaves_no_server_running_and_clean_clusters_and_a_restart_keeps_the_data_and_replication()
    {
        var dataRoot = TestApp.NewDataRoot();
        var id = Guid.CreateVersion7();
        try
        {
            var first = await TestApp.StartAsync(dataRoot);
            var firstPrimaryPort = new NpgsqlConnectionStringBuilder(await first.GetConnectionStringAsync("todos")).Port;
            await ExecuteAsync(first, "todos", $"CREATE TABLE restart_probe (id uuid PRIMARY KEY); INSERT INTO restart_probe VALUES ('{id}')");

            var started = OwnedProcesses.Under(dataRoot);
            Assert.Contains(started, p => p.CommandLine.Contains("postgres-primary", StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.Contains("postgres-replica", StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.StartsWith("redis-server", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.StartsWith("prometheus --", StringComparison.Ordinal));
            Assert.Equal(2, started.Count(p => p.CommandLine.StartsWith("prometheus-postgres-exporter", StringComparison.Ordinal)));

            await first.DisposeAsync();

            var clock = Stopwatch.StartNew();
            var alive = started;
            while (alive.Count > 0 && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(100);
                alive = [.. started.Where(p => OwnedProcesses.IsAlive(p.Pid))];
            }

            Assert.True(alive.Count == 0, $"still running {clock.Elapsed} after stop: {string.Join("; ", alive)}");
            Assert.Empty(OwnedProcesses.Under(dataRoot));

            // A fast shutdown leaves each cluster clean; a SIGKILL would leave "in production" and force recovery.
            Assert.Equal("shut down", await ClusterStateAsync(Path.Combine(dataRoot, "postgres-primary")));
            Assert.Equal("shut down in recovery", await ClusterStateAsync(Path.Combine(dataRoot, "postgres-replica")));

            // Second run on the same folders: the primary comes back on a new port, and the kept replica must
            // stream from that port (not from the one its folder remembers) and still hold the first run's row.
            await using var second = await TestApp.StartAsync(dataRoot);
            var secondPrimaryPort = new NpgsqlConnectionStringBuilder(await second.GetConnectionStringAsync("todos")).Port;
            Assert.NotEqual(firstPrimaryPort, secondPrimaryPort);
            Assert.Equal(1L, await ScalarAsync<long>(second, "todos", $"SELECT count(*) FROM restart_probe WHERE id = '{id}'"));
            Assert.Equal(1L, await ScalarAsync<long>(second, "todos-replica", $"SELECT count(*) FROM restart_probe WHERE id = '{id}'"));
            Assert.Equal(secondPrimaryPort, await ScalarAsync<int>(second, "todos-replica", "SELECT sender_port FROM pg_stat_wal_receiver WHERE status = 'streaming'"));
        }
        finally
        {
            Directory.Delete(dataRoot, recursive: true);
        }
    }

    private static async Task ExecuteAsync(DistributedApplication app, string resource, string sql) =>
        await ScalarAsync<object?>(app, resource, sql);

    private static async Task<T> ScalarAsync<T>(DistributedApplication app, string resource, string sql) =>
        await Sql.ScalarAsync<T>((await app.GetConnectionStringAsync(resource))!, sql);

    private static async Task<string> ClusterStateAsync(string dataDirectory)
    {
        var (exitCode, output) = await ProcessRunner.RunAsync(
            ProcessRunner.StartInfo(Path.Combine(PostgresServer.BinDirectory, "pg_controldata"), ["-D", dataDirectory], asPostgres: true),
            TimeSpan.FromSeconds(10));
        Assert.Equal(0, exitCode);
        return output.Split('\n').Single(l => l.StartsWith("Database cluster state:", StringComparison.Ordinal)).Split(':', 2)[1].Trim();
    }
}
