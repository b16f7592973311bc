using Npgsql;

namespace TodoScale.Data.Schema;

/// <summary>How one table is placed on a Citus cluster.</summary>
public sealed record CitusPlacement(string Table, string Kind, string Why);

/// <summary>
/// The part of `migrate` that runs only on a Citus coordinator (a database with the citus extension): after the
/// migrations, every tenant table is distributed by user_id in one co-location group, so a user's projects, todos,
/// archived todos and AI interactions are always on one worker and every foreign key, trigger and tenant-scoped
/// query stays on it. Idempotent: a table already distributed is left as it is, so every later `migrate` passes
/// through here too and only distributes what a newer migration added.
/// </summary>
public static class CitusLayout
{
    /// <summary>The distribution column of every tenant table.</summary>
    public const string DistributionColumn = "user_id";

    /// <summary>The first distributed table: the others are co-located with it.</summary>
    public const string ColocationAnchor = "projects";

    /// <summary>
    /// The hash-partitioned tables that become one plain table before they are distributed, so that Citus' shards
    /// are their partitions (measured on this project's page query: 16 local partitions each distributed took 36%
    /// more latency, 37% less throughput and 17x the shards of one distributed table; README, "TodoScale on Citus").
    /// The archive tables keep their monthly partitions: retention detaches a month.
    /// </summary>
    public static IReadOnlyList<string> Flattened { get; } = ["todos_active", "ai_interactions"];

    /// <summary>Where each of TodoScale's tables goes, in the order they are placed (projects first).</summary>
    public static IReadOnlyList<CitusPlacement> Placements { get; } =
    [
        new("projects", "distributed", "tenant data; the anchor of the co-location group"),
        new("todos_active", "distributed", "tenant data; one table whose shards are the partitions (its local hash partitions flattened first)"),
        new("todos_archived", "distributed", "tenant data, with its monthly partitions"),
        new("ai_interactions", "distributed", "tenant data; one table whose shards are the partitions (flattened like todos_active)"),
        new("ai_interactions_archived", "distributed", "tenant data, with its monthly partitions"),
        new("audit_log", "reference", "global, append-only, written in the same transaction as tenant rows on any worker"),
        new("legacy_migration", "coordinator", "operators' state, read and written only by the CLI on the coordinator"),
        new("legacy_rejects", "coordinator", "operators' state (the legacy migration is refused on Citus)"),
        new("partition_split", "coordinator", "operators' state (`partitions split` is refused on Citus)"),
        new(SchemaMigrator.HistoryTable, "coordinator", "migrate's own history"),
    ];

    /// <summary>Whether the database is a Citus coordinator (the citus extension is installed in it).</summary>
    public static async Task<bool> IsCitusAsync(NpgsqlConnection connection, CancellationToken cancellationToken = default) =>
        await Catalog.ScalarAsync<bool>(connection, null, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')", cancellationToken);

    /// <summary>
    /// Distributes what is not distributed yet; returns the tables it placed now (empty when the layout was current).
    /// Must run as the database's owner (a superuser in development), under migrate's lock.
    /// </summary>
    public static async Task<IReadOnlyList<string>> ApplyAsync(NpgsqlConnection connection, Action<string> log, CancellationToken cancellationToken = default)
    {
        // The coordinator opens its connections to the workers as the role a statement runs as: the API's and the
        // archiver's statements run as todoscale_app / todoscale_archiver (SET ROLE at connect), so those roles must
        // be able to log in on the workers (pg_hba and pg_dist_authinfo decide with what credentials). Roles are
        // propagated to every node by Citus.
        await Catalog.ExecuteAsync(connection, null, "ALTER ROLE todoscale_app LOGIN; ALTER ROLE todoscale_archiver LOGIN", cancellationToken);
        // Where the workers ask for a password (scram), the coordinator gives the one in pg_dist_authinfo (node 0: every
        // node): a random one per role, made here once, known only to the cluster (Citus propagates the role's password).
        await Catalog.ExecuteAsync(connection, null,
            """
            DO $$
            DECLARE
                role_name text;
                secret text;
            BEGIN
                FOREACH role_name IN ARRAY ARRAY['todoscale_app', 'todoscale_archiver'] LOOP
                    IF NOT EXISTS (SELECT FROM pg_dist_authinfo WHERE nodeid = 0 AND rolename = role_name) THEN
                        secret := replace(gen_random_uuid()::text || gen_random_uuid()::text, '-', '');
                        EXECUTE format('ALTER ROLE %I PASSWORD %L', role_name, secret);
                        INSERT INTO pg_dist_authinfo (nodeid, rolename, authinfo) VALUES (0, role_name, 'password=' || secret);
                    END IF;
                END LOOP;
            END $$
            """, cancellationToken);

        // For every session of this database, whatever its login: SET LOCAL (the tenant scope, the archiver's
        // session_replication_role and todoscale.archiving) travels with the transaction to the workers, and the
        // triggers (which act only on their own shard: V15) may exist on distributed tables.
        var database = await Catalog.ScalarAsync<string>(connection, null, "SELECT current_database()", cancellationToken);
        var quoted = "\"" + database.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";
        await Catalog.ExecuteAsync(connection, null,
            $"ALTER DATABASE {quoted} SET citus.propagate_set_commands = 'local'; " +
            $"ALTER DATABASE {quoted} SET citus.enable_unsafe_triggers = on; " +
            "SET citus.enable_unsafe_triggers = on",
            cancellationToken);

        await GrantOnWorkersAsync(connection, cancellationToken);

        var placed = new List<string>();
        foreach (var placement in Placements)
        {
            if (placement.Kind == "coordinator" || await IsPlacedAsync(connection, placement.Table, cancellationToken))
            {
                continue;
            }

            if (placement.Table == "todos_active")
            {
                await ProjectKeyWithoutSetNullAsync(connection, log, cancellationToken);
            }

            if (Flattened.Contains(placement.Table))
            {
                await FlattenAsync(connection, placement.Table, log, cancellationToken);
            }

            var sql = placement.Kind == "reference"
                ? $"SELECT create_reference_table('{placement.Table}')"
                : placement.Table == ColocationAnchor
                    ? $"SELECT create_distributed_table('{placement.Table}', '{DistributionColumn}')"
                    : $"SELECT create_distributed_table('{placement.Table}', '{DistributionColumn}', colocate_with => '{ColocationAnchor}')";
            var started = System.Diagnostics.Stopwatch.StartNew();
            await Catalog.ExecuteAsync(connection, null, sql, cancellationToken);
            log($"citus: {placement.Table} {(placement.Kind == "reference" ? "is a reference table" : $"distributed by {DistributionColumn}")} ({started.ElapsedMilliseconds} ms)");
            placed.Add(placement.Table);
        }

        await UnforceRowSecurityAsync(connection, log, cancellationToken);
        return placed;
    }

    /// <summary>
    /// Row-level security stays enabled on every tenant table, partition and (propagated by Citus) shard, but is not
    /// forced: Citus' online shard moves replicate as a non-superuser member of the table's owner, and PostgreSQL
    /// refuses logical replication into a table whose policy binds that role, so a move with writes to catch up would
    /// retry forever (V16). The API's role is bound as before; the owner is the role that runs `migrate`.
    /// </summary>
    private static async Task UnforceRowSecurityAsync(NpgsqlConnection connection, Action<string> log, CancellationToken cancellationToken)
    {
        var forced = new List<string>();
        await using (var command = new NpgsqlCommand(
            """
            SELECT c.oid::regclass::text FROM pg_class c
             WHERE c.relforcerowsecurity AND c.relnamespace = 'public'::regnamespace
               AND (c.relname = ANY (@tables)
                    OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY (@tables)))
             ORDER BY 1
            """, connection))
        {
            command.Parameters.AddWithValue("tables", Placements.Where(p => p.Kind == "distributed").Select(p => p.Table).ToArray());
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                forced.Add(reader.GetString(0));
            }
        }

        foreach (var table in forced)
        {
            await Catalog.ExecuteAsync(connection, null, $"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY", cancellationToken);
        }

        if (forced.Count > 0)
        {
            log($"citus: row-level security enabled, not forced, on {forced.Count} table(s) and their shards (Citus' online shard moves replicate as the owner)");
        }
    }

    /// <summary>
    /// What Citus does not propagate, done on every worker (again after a worker joins): grants on parameters. The
    /// archiver's batches set session_replication_role in their transaction (V7), which Citus propagates to the
    /// workers, so every worker grants it to the archiver role as the coordinator does.
    /// </summary>
    public static async Task GrantOnWorkersAsync(NpgsqlConnection connection, CancellationToken cancellationToken = default)
    {
        await Catalog.ExecuteAsync(connection, null,
            """
            DO $$
            DECLARE
                failed text;
            BEGIN
                IF EXISTS (SELECT FROM pg_parameter_acl p CROSS JOIN LATERAL aclexplode(p.paracl) a
                            WHERE p.parname = 'session_replication_role' AND a.grantee = 'todoscale_archiver'::regrole) THEN
                    SELECT string_agg(nodename || ':' || nodeport || ' ' || result, '; ') INTO failed
                      FROM run_command_on_workers('GRANT SET ON PARAMETER session_replication_role TO todoscale_archiver')
                     WHERE NOT success;
                    IF failed IS NOT NULL THEN
                        RAISE EXCEPTION 'granting session_replication_role on the workers failed: %', failed;
                    END IF;
                END IF;
            END $$
            """, cancellationToken);

    }

    /// <summary>
    /// Makes a hash-partitioned table one plain table with the same rows, keys, indexes, triggers, policies and grants
    /// (Schema/Sql/citus-flatten.sql, one transaction), while it is still local. A table distributed by an earlier
    /// TodoScale with its partitions is never here (it is placed already) and keeps that layout, which every part of
    /// TodoScale reads from the catalog.
    /// </summary>
    private static async Task FlattenAsync(NpgsqlConnection connection, string table, Action<string> log, CancellationToken cancellationToken)
    {
        var partitions = await Catalog.ScalarAsync<long>(connection, null,
            $"SELECT count(*) FROM pg_inherits WHERE inhparent = to_regclass('{table}')", cancellationToken);
        if (partitions == 0)
        {
            return;
        }

        var started = System.Diagnostics.Stopwatch.StartNew();
        await Catalog.ExecuteAsync(connection, null, ReadSql("citus-flatten.sql").Replace("{table}", table, StringComparison.Ordinal), cancellationToken);
        log($"citus: {table}'s {partitions} hash partitions made one table, to be distributed whole ({started.ElapsedMilliseconds} ms)");
    }

    private static string ReadSql(string name)
    {
        using var stream = typeof(CitusLayout).Assembly.GetManifestResourceStream($"Schema/Sql/{name}")
            ?? throw new InvalidOperationException($"no embedded SQL file Schema/Sql/{name}");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static Task<bool> IsPlacedAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken) =>
        Catalog.ScalarAsync<bool>(connection, null,
            $"SELECT EXISTS (SELECT FROM pg_dist_partition WHERE logicalrelid = to_regclass('{table}'))", cancellationToken);

    /// <summary>
    /// Citus refuses ON DELETE SET NULL on a foreign key that includes the distribution column. V15's trigger on
    /// projects clears project_id before a project goes, on both engines, so the key only has to refuse dangling
    /// references: redeclared NO ACTION here, while todos_active is still a local table.
    /// </summary>
    private static async Task ProjectKeyWithoutSetNullAsync(NpgsqlConnection connection, Action<string> log, CancellationToken cancellationToken)
    {
        var setNull = await Catalog.ScalarAsync<bool>(connection, null,
            """
            SELECT EXISTS (SELECT FROM pg_constraint WHERE conrelid = 'todos_active'::regclass
                            AND conname = 'todos_active_project_fkey' AND confdeltype = 'n')
            """, cancellationToken);
        if (!setNull)
        {
            return;
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await Catalog.ExecuteAsync(connection, transaction,
            """
            ALTER TABLE todos_active DROP CONSTRAINT todos_active_project_fkey;
            ALTER TABLE todos_active ADD CONSTRAINT todos_active_project_fkey
                FOREIGN KEY (user_id, project_id) REFERENCES projects (user_id, id);
            """, cancellationToken);
        await transaction.CommitAsync(cancellationToken);
        log("citus: todos_active_project_fkey redeclared without ON DELETE SET NULL (projects_before_delete clears project_id)");
    }
}
