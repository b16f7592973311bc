using Aspire.Hosting;
using Aspire.Hosting.Testing;
using Npgsql;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Citus;

/// <summary>
/// The whole stack with --Infra:Database=citus, started by the AppHost like a developer's `./build.sh run`: a
/// coordinator behind `todos`, its hot standby behind `todos-replica`, two workers, the cluster formed by citus.sh,
/// `migrate` distributing; then stopped and started again on the same data. In process mode each server is a local
/// PostgreSQL with Citus (every one on a new port on the restart); in container mode each is a citusdata/citus
/// container, the nodes knowing each other by container name.
/// </summary>
public abstract class CitusStackTests
{
    protected abstract IEnumerable<string> Args { get; }

    /// <summary>What the started stack runs (its processes, its containers).</summary>
    protected abstract void AssertRunning(string dataRoot);

    /// <summary>After the stop: nothing of it left running, its data kept.</summary>
    protected abstract Task AssertStoppedAsync(string dataRoot);

    protected virtual void CleanUp(string dataRoot)
    {
    }

    [EngineFact]
    public async Task The_stack_runs_on_citus_reads_are_current_through_the_standby_and_a_restart_keeps_the_cluster_and_data()
    {
        var dataRoot = TestApp.NewDataRoot();
        string[] args = ["--Infra:Database=citus", .. Args];
        try
        {
            Guid user, todo;
            await using (var first = await TestApp.StartAsync(dataRoot, args))
            {
                var coordinator = (await first.GetConnectionStringAsync("todos"))!;

                // migrate distributed the tables over the two workers the AppHost started.
                var workers = await Sql.ColumnAsync<string>(coordinator, "SELECT nodename || ':' || nodeport FROM pg_dist_node WHERE groupid > 0 AND isactive ORDER BY 1");
                Assert.Equal(2, workers.Count);
                Assert.Equal(2L, await Sql.ScalarAsync<long>(coordinator, "SELECT count(DISTINCT (nodename, nodeport)) FROM citus_shards WHERE table_name = 'todos_active'::regclass"));
                Assert.True(await Sql.ScalarAsync<bool>(coordinator, "SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = 'projects'::regclass)"));

                // Through the API: a project, a todo with a subtask, the project deleted (the todo stays, unfiled).
                using var api = ApiClient.ForNewUser(first, dataRoot);
                user = api.UserId;
                var project = (await api.PostAsync("/api/projects", new { name = "home" })).Is(Created).Id;
                todo = await api.CreateTodoAsync("on citus", new { projectId = project });
                var subtask = await api.CreateTodoAsync("a step", parent: todo);
                Assert.Equal(1, (await api.GetAsync($"/api/todos/{subtask}")).Is(OK).Body!["depth"]!.GetValue<int>());
                (await api.DeleteAsync($"/api/projects/{project}")).Is(NoContent);
                Assert.Null((await api.GetAsync($"/api/todos/{todo}")).Is(OK).Body!["projectId"]);
                // The merge with the archive is planned per call on Citus (no generic plan for its UNION ALL there): past
                // PostgreSQL's 5 custom plans of one prepared statement too.
                for (var i = 0; i < 20; i++)
                {
                    Assert.Equal(2, (await api.GetAsync("/api/todos?include_archived=true")).Is(OK).ItemIds.Count);
                }

                using (var other = ApiClient.ForNewUser(first, dataRoot))
                {
                    (await other.GetAsync($"/api/todos/{todo}")).IsProblem(NotFound);
                }

                // The standby holds the coordinator's metadata, not the rows: with its replay paused it still reads
                // every write (its queries go to the workers' primaries), so it can never show a user stale data.
                var standby = (await first.GetConnectionStringAsync("todos-replica"))!;
                await using var paused = new NpgsqlConnection(standby);
                await paused.OpenAsync();
                Assert.True(await Sql.ScalarAsync<bool>(paused, "SELECT pg_is_in_recovery()"));
                await Sql.ExecuteAsync(paused, "SELECT pg_wal_replay_pause()");
                try
                {
                    var written = await api.CreateTodoAsync("written while the standby is paused");
                    await using var read = new NpgsqlConnection(Roles.As(standby, Roles.App));
                    await read.OpenAsync();
                    await using var transaction = await read.BeginTransactionAsync();
                    await Sql.ExecuteAsync(read, $"SET LOCAL app.user_id = '{user}'", transaction);
                    Assert.Equal(1L, await Sql.ScalarAsync<long>(read, $"SELECT count(*) FROM todos_active WHERE user_id = '{user}' AND id = '{written}'", transaction));
                    (await api.GetAsync($"/api/todos/{written}")).Is(OK);
                }
                finally
                {
                    await Sql.ExecuteAsync(paused, "SELECT pg_wal_replay_resume()");
                }

                AssertRunning(dataRoot);
            }

            await AssertStoppedAsync(dataRoot);

            // Again on the same data: the same two workers in the cluster (process mode: citus.sh moves them to their
            // ports of this run), the data all there.
            await using var second = await TestApp.StartAsync(dataRoot, args);
            var again = (await second.GetConnectionStringAsync("todos"))!;
            Assert.Equal(2L, await Sql.ScalarAsync<long>(again, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0"));
            using var back = ApiClient.ForNewUser(second, dataRoot, user);
            Assert.Equal("on citus", (await back.GetAsync($"/api/todos/{todo}")).Is(OK).Body!["title"]!.GetValue<string>());
            Assert.Equal(3, (await back.GetAsync("/api/todos")).Is(OK).ItemIds.Count);
        }
        finally
        {
            CleanUp(dataRoot);
            Directory.Delete(dataRoot, recursive: true);
        }
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[NeedsCitus]
public sealed class CitusStackTestsInProcessMode : CitusStackTests
{
    protected override IEnumerable<string> Args => [];

    protected override void AssertRunning(string dataRoot)
    {
        var started = OwnedProcesses.Under(dataRoot);
        foreach (var folder in new[] { "citus-coordinator", "citus-coordinator-standby", "citus-worker-1", "citus-worker-2" })
        {
            Assert.Contains(started, p => p.CommandLine.Contains(folder, StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
        }
    }

    protected override async Task AssertStoppedAsync(string dataRoot)
    {
        await Eventually.TrueAsync("every process under the data root gone", () => Task.FromResult(OwnedProcesses.Under(dataRoot).Count == 0), TimeSpan.FromSeconds(20));
        Assert.Empty(OwnedProcesses.Under(dataRoot));
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[NeedsContainerEngine(Citus = true)]
public sealed class CitusStackTestsInContainerMode : CitusStackTests
{
    private static readonly string[] Servers = ["citus-coordinator", "citus-coordinator-standby", "citus-worker-1", "citus-worker-2"];

    protected override IEnumerable<string> Args =>
        ["--Infra:Mode=container", $"--Infra:Grafana={(ContainerEngine.HasGrafana ? "true" : "false")}", $"--ASPIRE_CONTAINER_RUNTIME={ContainerEngine.Runtime}"];

    protected override void AssertRunning(string dataRoot)
    {
        // Every server a citusdata/citus container, its data in the stack's volume of that name.
        foreach (var server in Servers)
        {
            var (_, running) = ContainerEngine.Run("ps", "--filter", $"volume={Volume(dataRoot, server)}", "--format", "{{.Image}}");
            Assert.Equal(ContainerEngine.CitusImage, running.Trim());
        }
    }

    protected override async Task AssertStoppedAsync(string dataRoot)
    {
        await Progress.UntilAsync(() => Servers.All(server => ContainerEngine.Run("ps", "-a", "-q", "--filter", $"volume={Volume(dataRoot, server)}").Output.Trim().Length == 0),
            () => "the servers' containers still there after stop", TimeSpan.FromSeconds(60));
        var (_, volumes) = ContainerEngine.Run("volume", "ls", "--format", "{{.Name}}");
        Assert.All(Servers, server => Assert.Contains(Volume(dataRoot, server), volumes.Split('\n', StringSplitOptions.TrimEntries)));
    }

    protected override void CleanUp(string dataRoot) => ContainerEngine.RemoveVolumes(dataRoot);

    private static string Volume(string dataRoot, string server) => $"todoscale-{TodoScale.AppHost.Infra.ContainerInfrastructure.StackId(dataRoot)}-{server}";
}
