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
/// `migrate` distributing; then stopped and started again on the same folders (every server on a new port).
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[NeedsCitus]
public sealed class CitusStackTests
{
    [EngineFact]
    public async Task The_stack_runs_on_citus_reads_are_current_through_the_standby_and_a_restart_keeps_the_cluster_and_data()
    {
        var dataRoot = TestApp.NewDataRoot();
        try
        {
            Guid user, todo;
            await using (var first = await TestApp.StartAsync(dataRoot, ["--Infra:Database=citus"]))
            {
                var coordinator = (await first.GetConnectionStringAsync("todos"))!;

                // migrate distributed the tables over the two workers the AppHost started.
                var workerPorts = await Sql.ColumnAsync<int>(coordinator, "SELECT nodeport FROM pg_dist_node WHERE groupid > 0 ORDER BY nodeport");
                Assert.Equal(2, workerPorts.Count);
                Assert.Equal(2L, await Sql.ScalarAsync<long>(coordinator, "SELECT count(DISTINCT nodeport) FROM citus_shards WHERE table_name = 'todos_active'::regclass"));
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

                var started = OwnedProcesses.Under(dataRoot);
                foreach (var folder in new[] { "citus-coordinator", "citus-coordinator-standby", "citus-worker-1", "citus-worker-2" })
                {
                    Assert.Contains(started, p => p.CommandLine.Contains(folder, StringComparison.Ordinal) && p.CommandLine.Contains("/postgres ", StringComparison.Ordinal));
                }
            }

            // Stopped: nothing of it left running.
            await Eventually.TrueAsync("every process under the data root gone", () => Task.FromResult(OwnedProcesses.Under(dataRoot).Count == 0), TimeSpan.FromSeconds(20));
            Assert.Empty(OwnedProcesses.Under(dataRoot));

            // Again on the same folders: new ports everywhere; citus.sh moves the workers, the data is all there.
            await using var second = await TestApp.StartAsync(dataRoot, ["--Infra:Database=citus"]);
            var again = (await second.GetConnectionStringAsync("todos"))!;
            Assert.Equal(2L, await Sql.ScalarAsync<long>(again, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0"));
            using var back = ApiClient.ForNewUser(second, dataRoot, user);
            Assert.Equal("on citus", (await back.GetAsync($"/api/todos/{todo}")).Is(OK).Body!["title"]!.GetValue<string>());
            Assert.Equal(3, (await back.GetAsync("/api/todos")).Is(OK).ItemIds.Count);
        }
        finally
        {
            Directory.Delete(dataRoot, recursive: true);
        }
    }
}
