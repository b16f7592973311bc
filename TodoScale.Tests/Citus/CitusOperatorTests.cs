using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Citus;

/// <summary>The operators' verbs that have no meaning on a Citus cluster refuse with the Citus way named, changing nothing.</summary>
[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class CitusOperatorTests(CitusCluster cluster)
{
    [EngineFact]
    public async Task Partitions_split_is_refused_with_the_rebalancer_named_and_the_layout_unchanged()
    {
        var connectionString = await cluster.FreshMigratedDatabaseAsync("split");
        var (exitCode, output) = await OperatorCli.RunAsync(["partitions", "split", "--to", "32"], connectionString);

        Assert.NotEqual(0, exitCode);
        Assert.Contains("Citus cluster", output, StringComparison.Ordinal);
        Assert.Contains("partitions rebalance --add-worker", output, StringComparison.Ordinal);
        Assert.Equal((long)CitusCluster.ShardCount, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_active'::regclass"));
    }

    [EngineFact]
    public async Task Rebalance_refuses_a_worker_that_is_not_host_and_port_and_one_that_does_not_answer_adding_nothing()
    {
        var connectionString = await cluster.MigratedDatabaseForAsync(GetType());
        var bad = await OperatorCli.RunAsync(["partitions", "rebalance", "--add-worker", "localhost"], connectionString);
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("expected host:port", bad.Output, StringComparison.Ordinal);

        var nobody = await OperatorCli.RunAsync(["partitions", "rebalance", "--add-worker", "127.0.0.1:1"], connectionString);
        Assert.Equal(1, nobody.ExitCode);
        Assert.Contains("cannot be prepared", nobody.Output, StringComparison.Ordinal);
        Assert.Equal(2L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0"));
    }

    [EngineFact]
    public async Task Rebalance_refuses_a_worker_or_a_new_one_that_commits_asynchronously_adding_and_moving_nothing()
    {
        // The writes a rebalance could lose: acknowledged by a node whose sessions commit with synchronous_commit = off.
        var connectionString = await cluster.FreshMigratedDatabaseAsync("async");
        var database = new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Database!;
        var worker = cluster.Workers[1];
        await Sql.ExecuteAsync(worker.ConnectionString(), $"ALTER DATABASE \"{database}\" SET synchronous_commit = off");
        var spare = await cluster.StartWorkerAsync();

        var refused = await OperatorCli.RunAsync(["partitions", "rebalance", "--add-worker", $"127.0.0.1:{spare.Port}"], connectionString);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains($"worker 127.0.0.1:{worker.Port} runs with synchronous_commit = off", refused.Output, StringComparison.Ordinal);
        Assert.Contains("nothing was added or moved", refused.Output, StringComparison.Ordinal);
        Assert.Equal(2L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_background_job"));

        // The workers fixed, the new one is checked too, before it joins: the role the rebalance logs in as commits asynchronously there.
        await Sql.ExecuteAsync(worker.ConnectionString(), $"ALTER DATABASE \"{database}\" RESET synchronous_commit");
        var role = new Npgsql.NpgsqlConnectionStringBuilder(connectionString).Username!;
        await Sql.ExecuteAsync(spare.ConnectionString(), $"ALTER ROLE \"{role}\" SET synchronous_commit = off");
        var joining = await OperatorCli.RunAsync(["partitions", "rebalance", "--add-worker", $"127.0.0.1:{spare.Port}"], connectionString);
        Assert.Equal(1, joining.ExitCode);
        Assert.Contains($"the new worker 127.0.0.1:{spare.Port} runs with synchronous_commit = off", joining.Output, StringComparison.Ordinal);
        Assert.Equal(2L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_node WHERE groupid > 0"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_background_job"));
    }

    [EngineFact]
    public async Task Partitions_doctor_sees_a_users_statement_routed_to_one_shard_and_a_hidden_user_id_fan_out()
    {
        var connectionString = await cluster.MigratedDatabaseForAsync(GetType());
        var user = Guid.CreateVersion7();
        var shard = await Sql.ScalarAsync<string>(connectionString, $"SELECT 'todos_active_' || get_shard_id_for_distribution_column('todos_active', '{user}'::uuid)");

        var routed = await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--query", "todos_active_user_created_ix"], connectionString);
        Assert.True(routed.ExitCode == 0, routed.Output);
        Assert.True(routed.Output.Contains("routed to the user's shard (Citus Task Count 1)", StringComparison.Ordinal), routed.Output);
        Assert.Contains("routed to the user's shard (Citus Task Count 1)", routed.Output, StringComparison.Ordinal);
        Assert.Contains($"todos_active -> {shard}", routed.Output, StringComparison.Ordinal);
        Assert.Contains($" on {shard} using ", routed.Output, StringComparison.Ordinal);

        var hidden = await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--as", "owner", "--sql",
            "SELECT id FROM todos_active WHERE md5(user_id::text) = md5(@user_id::text) ORDER BY created_at DESC LIMIT 50"], connectionString);
        Assert.True(hidden.ExitCode == 1, hidden.Output);
        Assert.True(hidden.Output.Contains($"fans out to {CitusCluster.ShardCount} shards (Citus Task Count {CitusCluster.ShardCount})", StringComparison.Ordinal), hidden.Output);
        Assert.Contains("verdict: MISS", hidden.Output, StringComparison.Ordinal);
    }

    [EngineFact]
    public async Task Legacy_start_is_refused_on_citus_with_the_way_through_one_postgresql_named()
    {
        var connectionString = await cluster.FreshMigratedDatabaseAsync("legacy");
        await Sql.ExecuteAsync(connectionString, LegacyTable.CreateTable); // the original design's DDL, verbatim
        var (exitCode, output) = await OperatorCli.RunAsync(["legacy", "start"], connectionString);

        Assert.NotEqual(0, exitCode);
        Assert.Contains("runs on one PostgreSQL", output, StringComparison.Ordinal);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_trigger WHERE tgrelid = 'todos'::regclass AND NOT tgisinternal"));
    }
}
