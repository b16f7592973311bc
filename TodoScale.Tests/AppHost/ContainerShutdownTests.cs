using System.Diagnostics;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using TodoScale.AppHost.Infra;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// Container mode stopped and started again on one data root: the stack's containers are gone after a stop, its
/// volumes are kept, and a restart finds the first run's data on the primary and, streaming again, on the replica.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[NeedsContainerEngine]
public sealed class ContainerShutdownTests(ITestOutputHelper output)
{
    [EngineFact]
    public async Task Stop_removes_the_containers_keeps_the_volumes_and_a_restart_keeps_the_data_and_replication()
    {
        var dataRoot = TestApp.NewDataRoot();
        string[] args = ["--Infra:Mode=container", $"--Infra:Grafana={(ContainerEngine.HasGrafana ? "true" : "false")}", $"--ASPIRE_CONTAINER_RUNTIME={ContainerEngine.Runtime}"];
        var volumes = new[] { "postgres-primary", "postgres-replica", "prometheus", "alertmanager" }.Select(v => $"todoscale-{ContainerInfrastructure.StackId(dataRoot)}-{v}").ToList();
        var id = Guid.CreateVersion7();
        try
        {
            var before = Containers();
            var clock = Stopwatch.StartNew();
            var first = await TestApp.StartAsync(dataRoot, args);
            output.WriteLine($"first start: every resource healthy and migrate done after {clock.Elapsed.TotalSeconds:0.0} s");
            await Sql.ExecuteAsync((await first.GetConnectionStringAsync("todos"))!, $"CREATE TABLE restart_probe (id uuid PRIMARY KEY); INSERT INTO restart_probe VALUES ('{id}')");
            var started = Containers().Except(before).ToList();
            Assert.True(started.Count >= 6, $"the stack's containers: {string.Join(", ", started)}"); // servers, cache, exporters, prometheus, alertmanager

            clock.Restart();
            await first.DisposeAsync();
            await Progress.UntilAsync(() => !Containers().Intersect(started).Any(),
                () => $"the stack's containers still there after stop: {string.Join(", ", Containers().Intersect(started))}", TimeSpan.FromSeconds(60));
            output.WriteLine($"stop: the stack's {started.Count} containers gone after {clock.Elapsed.TotalSeconds:0.0} s");
            var (_, kept) = ContainerEngine.Run("volume", "ls", "--format", "{{.Name}}");
            Assert.All(volumes, v => Assert.Contains(v, kept.Split('\n', StringSplitOptions.TrimEntries)));

            // Second run on the same volumes: the first run's row, on the primary and on the replica, which streams.
            clock.Restart();
            await using var second = await TestApp.StartAsync(dataRoot, args);
            output.WriteLine($"restart: every resource healthy after {clock.Elapsed.TotalSeconds:0.0} s");
            Assert.Equal(1L, await Sql.ScalarAsync<long>((await second.GetConnectionStringAsync("todos"))!, $"SELECT count(*) FROM restart_probe WHERE id = '{id}'"));
            var replica = (await second.GetConnectionStringAsync("todos-replica"))!;
            Assert.Equal(1L, await Sql.ScalarAsync<long>(replica, $"SELECT count(*) FROM restart_probe WHERE id = '{id}'"));
            Assert.Equal("streaming", await Sql.ScalarAsync<string>(replica, "SELECT status FROM pg_stat_wal_receiver"));
        }
        finally
        {
            ContainerEngine.RemoveVolumes(dataRoot);
            Directory.Delete(dataRoot, recursive: true);
        }
    }

    /// <summary>The ids of every container the engine has, running or not.</summary>
    private static List<string> Containers() =>
        [.. ContainerEngine.Run("ps", "--all", "--quiet").Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];
}
