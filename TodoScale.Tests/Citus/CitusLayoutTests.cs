using Npgsql;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Citus;

/// <summary>
/// `migrate` on a real Citus cluster (coordinator + 2 workers): what it distributes and where, and the tenant wall
/// on the workers, where the rows really are (the coordinator's partitions are empty shells there).
/// </summary>
[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class CitusLayoutTests(CitusCluster cluster)
{
    private static readonly string[] TenantTables = ["projects", "todos_active", "todos_archived", "ai_interactions", "ai_interactions_archived"];

    [EngineFact]
    public async Task Migrate_distributes_every_tenant_table_by_user_id_in_one_colocation_group_and_is_idempotent()
    {
        var connectionString = await cluster.MigratedDatabaseForAsync(GetType());

        // Every tenant table and every one of its partitions: hash-distributed by user_id, one co-location group.
        var placements = await Sql.ColumnAsync<string>(connectionString, """
            SELECT logicalrelid::text || ' ' || partmethod::text || ' ' || coalesce(column_to_column_name(logicalrelid, partkey), '-') || ' ' || colocationid
              FROM pg_dist_partition ORDER BY 1
            """);
        var distributed = placements.Where(p => !p.StartsWith("audit_log ", StringComparison.Ordinal)).ToList();
        var expectedTables = await Sql.ColumnAsync<string>(connectionString, $"""
            SELECT c.relname FROM pg_class c
             WHERE c.relname = ANY (ARRAY['{string.Join("','", TenantTables)}'])
                OR c.oid IN (SELECT inhrelid FROM pg_inherits WHERE inhparent::regclass::text = ANY (ARRAY['{string.Join("','", TenantTables)}']))
             ORDER BY 1
            """);
        Assert.Equal(expectedTables, distributed.Select(p => p.Split(' ')[0]).Order(StringComparer.Ordinal).ToList());
        Assert.All(distributed, p => Assert.Equal(("h", "user_id"), (p.Split(' ')[1], p.Split(' ')[2])));
        Assert.Single(distributed.Select(p => p.Split(' ')[3]).Distinct());
        Assert.True(expectedTables.Count > 40, $"{expectedTables.Count} tables: the hash and month partitions are distributed too");

        // audit_log is a reference table; the operators' tables stay on the coordinator, undistributed.
        Assert.Contains(placements, p => p.StartsWith("audit_log n ", StringComparison.Ordinal));
        foreach (var local in CitusLayout.Placements.Where(p => p.Kind == "coordinator"))
        {
            Assert.DoesNotContain(placements, p => p.StartsWith(local.Table + " ", StringComparison.Ordinal));
        }

        // The shards are on both workers, none on the coordinator.
        var shardsPerNode = await Sql.ColumnAsync<string>(connectionString,
            "SELECT nodeport || ':' || count(*) FROM citus_shards WHERE citus_table_type = 'distributed' GROUP BY nodeport ORDER BY nodeport");
        Assert.Equal(cluster.Workers.Select(w => w.Port.ToString(System.Globalization.CultureInfo.InvariantCulture)).Order(),
            shardsPerNode.Select(s => s.Split(':')[0]).Order());

        // The project key lost only its SET NULL action (V15's trigger clears project_id instead).
        Assert.Equal("a", await Sql.ScalarAsync<string>(connectionString,
            "SELECT confdeltype::text FROM pg_constraint WHERE conname = 'todos_active_project_fkey' AND conrelid = 'todos_active'::regclass"));

        // A second migrate finds everything in place.
        var again = await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync();
        Assert.Equal((0, 0), (again.Applied, again.Distributed.Count));
    }

    [EngineFact]
    public async Task The_tenant_wall_holds_on_the_workers_shards_named_directly()
    {
        var connectionString = await cluster.MigratedDatabaseForAsync(GetType());
        var (a, b) = await TwoUsersInOneShardAsync(connectionString);
        foreach (var user in new[] { a, b })
        {
            await Sql.ExecuteAsync(connectionString, $"""
                INSERT INTO todos_active (user_id, id, title) SELECT '{user}', gen_random_uuid(), 'todo ' || i FROM generate_series(1, 3) i
                """);
        }

        // Through the coordinator, as the API's role: A's rows only.
        await using (var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App)))
        await using (var transaction = await connection.BeginTenantTransactionAsync(a))
        {
            Assert.Equal([a], await Sql.ColumnAsync<Guid>(connection, "SELECT DISTINCT user_id FROM todos_active", transaction));
        }

        // On the worker that holds the shard of A's partition, which holds B's rows too, named directly.
        var partition = PartitionHash.PartitionName("todos_active", a, 16);
        var (shard, port) = await ShardOfAsync(connectionString, partition, a);
        var worker = cluster.Workers.Single(w => w.Port == port);
        var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        var onWorker = Roles.As(worker.ConnectionString(database), Roles.App);
        Assert.Equal(6L, await Sql.ScalarAsync<long>(worker.ConnectionString(database), $"SELECT count(*) FROM {shard}")); // both tenants' rows are there
        await using (var connection = await Sql.OpenAsync(onWorker))
        await using (var transaction = await connection.BeginTenantTransactionAsync(a))
        {
            Assert.Equal([a], await Sql.ColumnAsync<Guid>(connection, $"SELECT DISTINCT user_id FROM {shard}", transaction));
            var write = await Assert.ThrowsAsync<PostgresException>(() =>
                Sql.ExecuteAsync(connection, $"INSERT INTO {shard} (user_id, id, title) VALUES ('{b}', gen_random_uuid(), 'planted')", transaction));
            Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, write.SqlState);
        }

        // Without a tenant the shard fails closed.
        var closed = await Assert.ThrowsAsync<PostgresException>(() => Sql.ScalarAsync<long>(onWorker, $"SELECT count(*) FROM {shard}"));
        Assert.Equal(PostgresErrorCodes.InvalidTextRepresentation, closed.SqlState);
    }

    /// <summary>Two users whose rows share one hash partition and, on Citus, one shard of it.</summary>
    private static async Task<(Guid A, Guid B)> TwoUsersInOneShardAsync(string connectionString)
    {
        var a = Guid.CreateVersion7();
        var partition = PartitionHash.PartitionName("todos_active", a, 16);
        var shardOfA = await Sql.ScalarAsync<long>(connectionString, $"SELECT get_shard_id_for_distribution_column('{partition}', '{a}'::uuid)");
        for (var attempt = 0; attempt < 10_000; attempt++)
        {
            var b = Guid.CreateVersion7();
            if (PartitionHash.PartitionName("todos_active", b, 16) == partition &&
                await Sql.ScalarAsync<long>(connectionString, $"SELECT get_shard_id_for_distribution_column('{partition}', '{b}'::uuid)") == shardOfA)
            {
                return (a, b);
            }
        }

        throw new InvalidOperationException("no second user found in the first user's shard");
    }

    private static async Task<(string Shard, int Port)> ShardOfAsync(string connectionString, string partition, Guid user)
    {
        var row = await Sql.ScalarAsync<string>(connectionString, $"""
            SELECT s.shard_name || ' ' || s.nodeport FROM citus_shards s
             WHERE s.shardid = get_shard_id_for_distribution_column('{partition}', '{user}'::uuid)
            """);
        var parts = row.Split(' ');
        return (parts[0], int.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture));
    }
}
