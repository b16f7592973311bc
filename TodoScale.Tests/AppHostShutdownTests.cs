using System.Diagnostics;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests;

/// <summary>Starts its own AppHost (the shared one must stay up for its collection) and stops it.</summary>
public sealed class AppHostShutdownTests
{
    [Fact]
    public async Task After_the_AppHost_stops_no_server_it_started_is_running_and_the_clusters_shut_down_cleanly()
    {
        var dataRoot = TestApp.NewDataRoot();
        try
        {
            var app = await TestApp.StartAsync(dataRoot);
            var started = OwnedProcesses.Under(dataRoot);
            Assert.Contains(started, p => p.CommandLine.Contains("postgres-primary", StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.Contains("postgres-replica", StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.StartsWith("redis-server", StringComparison.Ordinal));
            Assert.Contains(started, p => p.CommandLine.StartsWith("prometheus", StringComparison.Ordinal));

            await app.DisposeAsync();

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
        }
        finally
        {
            Directory.Delete(dataRoot, recursive: true);
        }
    }

    private static async Task<string> ClusterStateAsync(string dataDirectory)
    {
        var (exitCode, output) = await ProcessRunner.RunAsync(
            ProcessRunner.StartInfo(Path.Combine(PostgresServer.BinDirectory, "pg_controldata"), ["-D", dataDirectory], asPostgres: true),
            TimeSpan.FromSeconds(10));
        Assert.Equal(0, exitCode);
        return output.Split('\n').Single(l => l.StartsWith("Database cluster state:", StringComparison.Ordinal)).Split(':', 2)[1].Trim();
    }
}
