using System.Globalization;
using TodoScale.Data.Schema;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Schema;

/// <summary>The schema `migrate` builds, read back from the catalog of a real PostgreSQL.</summary>
[Collection(PostgresCollection.Name)]
public sealed class SchemaLayoutTests(PostgresServer server)
{
    /// <summary>Every table that holds tenant data; audit_log (global) and the migration history are not.</summary>
    // Every table holds tenant data but the operators' own: the audit log, the migration history, and the legacy
    // migration's state and rejects (written only by the `legacy` verbs and the sync triggers, never by the API) and
    // the re-split's progress.
    private const string UserTables = """
        SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND c.relname NOT IN ('audit_log', 'schema_history', 'legacy_migration', 'legacy_rejects', 'partition_split')
        """;

    private Task<string> Database => server.MigratedDatabaseForAsync(GetType());

    /// <summary>The column lists C# names on both sides of a move are the tables' columns, in the catalog's order (TodoColumns).</summary>
    [Theory]
    [InlineData("todos_active", TodoColumns.Todo)]
    [InlineData("todos_archived", TodoColumns.Todo + ", archived_at")]
    [InlineData("ai_interactions", TodoColumns.AiInteraction)]
    [InlineData("ai_interactions_archived", TodoColumns.AiInteraction + ", archived_at")]
    public async Task The_shared_column_lists_are_the_tables_columns_in_order(string table, string columns)
    {
        var catalog = await Sql.ColumnAsync<string>(await Database,
            $"SELECT attname FROM pg_attribute WHERE attrelid = '{table}'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum");
        Assert.Equal(columns.Split(", "), catalog);
        Assert.Equal(TodoColumns.Todo.Split(", ").Where(c => c != "depth"), TodoColumns.TodoButDepth.Split(", "));
    }

    [Theory]
    [InlineData("todos_active")]
    [InlineData("ai_interactions")]
    public async Task Hash_partitions_p00_to_p15_have_modulus_16_and_one_remainder_each(string table)
    {
        var bounds = await Sql.ColumnAsync<string>(await Database, $"""
            SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = '{table}'::regclass ORDER BY c.relname
            """);

        var expected = Enumerable.Range(0, 16)
            .Select(r => $"{table}_p{r:00} FOR VALUES WITH (modulus 16, remainder {r})");
        Assert.Equal(expected, bounds);
    }

    [Theory]
    [InlineData("todos_archived")]
    [InlineData("ai_interactions_archived")]
    public async Task Archive_months_exist_for_the_month_of_the_migration_and_3_ahead_with_utc_month_bounds(string table)
    {
        await using var connection = await Sql.OpenAsync(await Database);
        await Sql.ExecuteAsync(connection, "SET TimeZone = 'UTC'");
        // The months were made from the database's clock when the migration that created the table ran: Evolve
        // records that transaction's now() as installed_on (the month may have turned since).
        var version = table == "todos_archived" ? "2" : "3";
        var today = DateOnly.FromDateTime(await Sql.ScalarAsync<DateTime>(connection,
            $"SELECT (installed_on AT TIME ZONE 'UTC')::date::timestamp FROM schema_history WHERE version = '{version}'"));
        var bounds = await Sql.ColumnAsync<string>(connection, $"""
            SELECT c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid)
            FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = '{table}'::regclass ORDER BY c.relname
            """);

        var first = new DateOnly(today.Year, today.Month, 1);
        var expected = Enumerable.Range(0, 4).Select(i => first.AddMonths(i)).Select(month =>
            string.Create(CultureInfo.InvariantCulture,
                $"{table}_y{month:yyyy}m{month:MM} FOR VALUES FROM ('{month:yyyy-MM-dd} 00:00:00+00') TO ('{month.AddMonths(1):yyyy-MM-dd} 00:00:00+00')"));
        Assert.Equal(expected, bounds);
    }

    [Fact]
    public async Task No_partitioned_table_has_a_default_partition_or_a_second_level_of_partitioning()
    {
        var connectionString = await Database;
        Assert.Equal(4, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_partitioned_table"));
        Assert.Equal(0, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_partitioned_table WHERE partdefid <> 0"));
        Assert.Equal(0, await Sql.ScalarAsync<long>(connectionString,
            "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind = 'p'"));
    }

    [Fact]
    public async Task Every_key_unique_index_and_foreign_key_on_a_user_table_includes_user_id_in_the_same_position()
    {
        var connectionString = await Database;
        var withoutUserId = await Sql.ColumnAsync<string>(connectionString, $"""
            SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.oid IN ({UserTables})
              AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'user_id' AND a.attnotnull)
            """);
        Assert.Empty(withoutUserId);

        // Unique indexes cover primary keys and unique constraints, on parents and on every partition.
        var uniqueChecked = await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM pg_index WHERE indisunique AND indrelid IN ({UserTables})");
        var uniqueWithoutUserId = await Sql.ColumnAsync<string>(connectionString, $"""
            SELECT x.indexrelid::regclass::text FROM pg_index x
            WHERE x.indisunique AND x.indrelid IN ({UserTables})
              AND NOT EXISTS (SELECT FROM pg_attribute a WHERE a.attrelid = x.indrelid AND a.attname = 'user_id' AND a.attnum = ANY (x.indkey))
            """);
        Assert.Empty(uniqueWithoutUserId);
        Assert.True(uniqueChecked >= 45, $"only {uniqueChecked} unique indexes found: the check would prove nothing");

        var foreignKeysChecked = await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conrelid IN ({UserTables})");
        var foreignKeysCrossingUsers = await Sql.ColumnAsync<string>(connectionString, $"""
            SELECT con.conrelid::regclass::text || '.' || con.conname FROM pg_constraint con
            WHERE con.contype = 'f' AND con.conrelid IN ({UserTables})
              AND NOT EXISTS (
                  SELECT FROM generate_subscripts(con.conkey, 1) k
                  JOIN pg_attribute src ON src.attrelid = con.conrelid AND src.attnum = con.conkey[k]
                  JOIN pg_attribute dst ON dst.attrelid = con.confrelid AND dst.attnum = con.confkey[k]
                  WHERE src.attname = 'user_id' AND dst.attname = 'user_id')
            """);
        Assert.Empty(foreignKeysCrossingUsers);
        Assert.True(foreignKeysChecked >= 2, $"only {foreignKeysChecked} foreign keys found");
    }

    [Fact]
    public async Task Row_level_security_is_enabled_forced_and_tenant_scoped_on_every_user_table_and_partition()
    {
        var connectionString = await Database;
        var tables = await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM ({UserTables}) t");
        Assert.Equal(1 + 4 + 2 * 16 + 2 * 4, tables); // projects, 4 partitioned parents, their hash and month partitions

        var unprotected = await Sql.ColumnAsync<string>(connectionString, $"""
            SELECT c.oid::regclass::text FROM pg_class c
            WHERE c.oid IN ({UserTables})
              AND NOT (c.relrowsecurity AND c.relforcerowsecurity AND EXISTS (
                  SELECT FROM pg_policy p
                  WHERE p.polrelid = c.oid AND p.polname = 'tenant_isolation' AND p.polcmd = '*' AND p.polpermissive
                    AND pg_get_expr(p.polqual, p.polrelid) = '(user_id = (current_setting(''app.user_id''::text))::uuid)'
                    AND pg_get_expr(p.polwithcheck, p.polrelid) = '(user_id = (current_setting(''app.user_id''::text))::uuid)'))
            """);
        Assert.Empty(unprotected);
        Assert.Equal(0, await Sql.ScalarAsync<long>(connectionString,
            $"SELECT count(*) FROM pg_policy WHERE polrelid IN ({UserTables}) AND polname <> 'tenant_isolation'"));
    }

    [Fact]
    public async Task Partitions_carry_the_same_grants_as_their_parent_column_grants_included()
    {
        var mismatched = await Sql.ColumnAsync<string>(await Database, """
            SELECT child.relname FROM pg_inherits i
            JOIN pg_class child ON child.oid = i.inhrelid JOIN pg_class parent ON parent.oid = i.inhparent
            WHERE child.relacl IS DISTINCT FROM parent.relacl
            UNION ALL
            SELECT child.relname || '.' || pa.attname FROM pg_inherits i
            JOIN pg_class child ON child.oid = i.inhrelid
            JOIN pg_attribute pa ON pa.attrelid = i.inhparent AND pa.attnum > 0 AND NOT pa.attisdropped
            JOIN pg_attribute ca ON ca.attrelid = i.inhrelid AND ca.attname = pa.attname
            WHERE ca.attacl IS DISTINCT FROM pa.attacl
            """);
        Assert.Empty(mismatched);
        // Not vacuous: the archiver holds column grants on todos_active (V10, V14) that its partitions must carry.
        Assert.True(await Sql.ScalarAsync<bool>(await Database,
            "SELECT has_column_privilege('todoscale_archiver', 'todos_active_p00', 'depth', 'UPDATE')"));
    }

    [Fact]
    public async Task The_app_and_archiver_roles_exist_with_the_right_attributes()
    {
        var roles = await Sql.ColumnAsync<string>(await Database, """
            SELECT rolname || ' login=' || rolcanlogin || ' bypassrls=' || rolbypassrls || ' super=' || rolsuper
            FROM pg_roles WHERE rolname LIKE 'todoscale\_%' ORDER BY rolname
            """);
        Assert.Equal(
        [
            "todoscale_app login=false bypassrls=false super=false",
            "todoscale_archiver login=false bypassrls=true super=false",
        ], roles);
    }
}
