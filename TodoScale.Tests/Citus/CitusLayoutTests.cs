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

        // Every tenant table, and every month of the archive tables: hash-distributed by user_id, one co-location
        // group. todos_active and ai_interactions are one distributed table each (their shards are the partitions).
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
        foreach (var table in CitusLayout.Flattened)
        {
            Assert.Equal("r", await Sql.ScalarAsync<string>(connectionString, $"SELECT relkind::text FROM pg_class WHERE oid = '{table}'::regclass"));
            Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM pg_inherits WHERE inhparent = '{table}'::regclass"));
            Assert.Equal(8L, await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = '{table}'::regclass"));
        }

        Assert.DoesNotContain(expectedTables, t => t.StartsWith("todos_active_p", StringComparison.Ordinal) || t.StartsWith("ai_interactions_p", StringComparison.Ordinal));
        Assert.Contains(expectedTables, t => t.StartsWith("todos_archived_y", StringComparison.Ordinal));

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

    /// <summary>
    /// The flattened tables keep what the partitioned ones have on one PostgreSQL, read from the catalogs of both
    /// (a database of the coordinator's server without the citus extension is one PostgreSQL): columns, defaults,
    /// checks, keys, indexes, triggers, row-level security, policies, table and column grants. The two differences
    /// are the ones Citus asks for, named here, and row-level security not forced (V16).
    /// </summary>
    [EngineFact]
    public async Task The_flattened_tables_keep_every_column_key_index_trigger_policy_and_grant_of_the_partitioned_ones()
    {
        var citus = await cluster.MigratedDatabaseForAsync(GetType());
        var postgres = await cluster.Coordinator.CreateDatabaseAsync("flatten_reference");
        await new SchemaMigrator(postgres, new SchemaOptions(), _ => { }).MigrateAsync();

        foreach (var table in CitusLayout.Flattened)
        {
            var expected = (await FactsAsync(postgres, table)).ToList();
            // Row-level security is enabled on both, forced on one PostgreSQL only (Citus' shard moves replicate as a
            // member of the owner, which FORCE would bind: V16).
            expected[expected.IndexOf("security true true")] = "security true false";
            if (table == "todos_active")
            {
                // The subtask key, declared on each partition here (V11), is the table's own there.
                expected.Add("constraint todos_active_parent_fkey FOREIGN KEY (user_id, parent_todo_id) REFERENCES todos_active(user_id, id) ON DELETE CASCADE");
                // Citus refuses SET NULL on a key holding the distribution column (V15's trigger clears project_id).
                expected[expected.IndexOf("constraint todos_active_project_fkey FOREIGN KEY (user_id, project_id) REFERENCES projects(user_id, id) ON DELETE SET NULL (project_id)")] =
                    "constraint todos_active_project_fkey FOREIGN KEY (user_id, project_id) REFERENCES projects(user_id, id)";
            }

            Assert.Equal(expected.Order(StringComparer.Ordinal), (await FactsAsync(citus, table)).Order(StringComparer.Ordinal));
            Assert.True(expected.Count(f => f.StartsWith("index ", StringComparison.Ordinal)) >= 3, string.Join("\n", expected));
        }
    }

    /// <summary>
    /// The API and the archiver number a user's shard in C# (PartitionHash.ShardIndex, for the per-shard metrics): the
    /// same hash as Citus' worker_hash and the same shard as Citus' own routing, for random and time-ordered ids.
    /// </summary>
    [EngineFact]
    public async Task Shard_routing_in_CSharp_matches_the_clusters_own()
    {
        var connectionString = await cluster.MigratedDatabaseForAsync(GetType());
        var users = Enumerable.Range(0, 1_000).Select(i => i % 2 == 0 ? Guid.NewGuid() : Guid.CreateVersion7()).ToArray();
        var minValues = await Sql.ColumnAsync<int>(connectionString,
            "SELECT shardminvalue::int FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass ORDER BY 1");
        var shardIds = await Sql.ColumnAsync<long>(connectionString,
            "SELECT shardid FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass ORDER BY shardminvalue::int");
        await using var connection = await Sql.OpenAsync(connectionString);
        await using var command = new NpgsqlCommand(
            "SELECT u, worker_hash(u), get_shard_id_for_distribution_column('todos_active', u) FROM unnest(@users) u", connection);
        command.Parameters.AddWithValue("users", users);
        var mismatches = new List<string>();
        var seen = new HashSet<int>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            var user = reader.GetGuid(0);
            var index = PartitionHash.ShardIndex(user, minValues);
            seen.Add(index);
            if (PartitionHash.CitusHash(user) != reader.GetInt32(1) || index < 0 || shardIds[index] != reader.GetInt64(2))
            {
                mismatches.Add($"{user}: Citus hash {reader.GetInt32(1)} shard {reader.GetInt64(2)}, C# hash {PartitionHash.CitusHash(user)} shard index {index}");
            }
        }

        Assert.Empty(mismatches);
        Assert.Equal(minValues.Count, seen.Count); // every shard was hit, so the ranges' edges were crossed
    }

    private static Task<List<string>> FactsAsync(string connectionString, string table) => Sql.ColumnAsync<string>(connectionString, $"""
        SELECT 'column ' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
               || coalesce(' default ' || pg_get_expr(d.adbin, d.adrelid), '')
          FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
         WHERE a.attrelid = '{table}'::regclass AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT 'constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = '{table}'::regclass
        UNION ALL
        SELECT 'index ' || replace(pg_get_indexdef(indexrelid), ' ON ONLY ', ' ON ') FROM pg_index WHERE indrelid = '{table}'::regclass
        UNION ALL
        SELECT 'trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal
        UNION ALL
        SELECT 'security ' || relrowsecurity::text || ' ' || relforcerowsecurity::text FROM pg_class WHERE oid = '{table}'::regclass
        UNION ALL
        SELECT 'policy ' || polname || ' ' || polcmd::text || ' ' || polpermissive::text || ' ' || coalesce(pg_get_expr(polqual, polrelid), '-')
               || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), '-') FROM pg_policy WHERE polrelid = '{table}'::regclass
        UNION ALL
        SELECT 'grant ' || acl.grantee::regrole::text || ' ' || acl.privilege_type
          FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) acl WHERE c.oid = '{table}'::regclass AND acl.grantee <> c.relowner
        UNION ALL
        SELECT 'column grant ' || a.attname || ' ' || acl.grantee::regrole::text || ' ' || acl.privilege_type
          FROM pg_attribute a CROSS JOIN LATERAL aclexplode(a.attacl) acl WHERE a.attrelid = '{table}'::regclass AND a.attacl IS NOT NULL
        """);

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

        // On the worker that holds A's shard, which holds B's rows too, named directly.
        var (shard, port) = await ShardOfAsync(connectionString, "todos_active", a);
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

    [EngineFact]
    public async Task A_cluster_laid_out_before_V17_takes_its_index_on_every_shard_with_migrate()
    {
        // A cluster that ran migrate at V16: todos_active already one distributed table, without V17's index. Made
        // from a current one by taking V17 back (its index and its history row), which is all V17 did. On a plain
        // distributed table V17's CREATE INDEX .. ON ONLY is an ordinary index, which Citus builds on every shard.
        var connectionString = await cluster.FreshMigratedDatabaseAsync("before_v17");
        var shards = await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_dist_shard WHERE logicalrelid = 'todos_active'::regclass");
        Assert.Equal(shards, await ShardIndexesAsync()); // a fresh cluster: built before the flattening, on every shard
        await Sql.ExecuteAsync(connectionString, "DROP INDEX todos_active_archive_roots_ix");
        await Sql.ExecuteAsync(connectionString, "DELETE FROM public.schema_history WHERE version = '17'");
        Assert.Equal(0L, await ShardIndexesAsync());

        var result = await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync();

        Assert.Equal(["V17__archive_roots_index.sql"], result.Names);
        Assert.True(await Sql.ScalarAsync<bool>(connectionString,
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = 'todos_active_archive_roots_ix'::regclass AND i.indrelid = 'todos_active'::regclass"));
        Assert.Equal(shards, await ShardIndexesAsync());

        // Current now: the next migrate applies nothing.
        Assert.Empty((await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync()).Names);

        async Task<long> ShardIndexesAsync()
        {
            var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
            long total = 0;
            foreach (var worker in cluster.Workers)
            {
                // Citus hides shards from pg_class in a client's session unless told not to.
                var seeingShards = new NpgsqlConnectionStringBuilder(worker.ConnectionString(database)) { Options = "-c citus.override_table_visibility=off" };
                total += await Sql.ScalarAsync<long>(seeingShards.ConnectionString,
                    "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname ~ '^todos_active_archive_roots_ix_[0-9]+$' AND i.indisvalid");
            }

            return total;
        }
    }

    /// <summary>Two users whose rows share one shard of todos_active.</summary>
    private static async Task<(Guid A, Guid B)> TwoUsersInOneShardAsync(string connectionString)
    {
        var a = Guid.CreateVersion7();
        var shardOfA = await Sql.ScalarAsync<long>(connectionString, $"SELECT get_shard_id_for_distribution_column('todos_active', '{a}'::uuid)");
        for (var attempt = 0; attempt < 1_000; attempt++)
        {
            var b = Guid.CreateVersion7();
            if (await Sql.ScalarAsync<long>(connectionString, $"SELECT get_shard_id_for_distribution_column('todos_active', '{b}'::uuid)") == shardOfA)
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
