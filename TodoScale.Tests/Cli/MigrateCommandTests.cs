using Npgsql;
using TodoScale.Data.Schema;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Cli;

/// <summary>The operators' `migrate` verb, run as the real CLI binary against a real PostgreSQL.</summary>
[Collection(PostgresCollection.Name)]
public sealed class MigrateCommandTests(PostgresServer server)
{
    /// <summary>
    /// A hang guard on every CLI run (splits under traffic, backfills and pg_dump included), not a speed expectation:
    /// long enough for a loaded 2-core machine, so only a run that is stuck fails on it.
    /// </summary>
    private static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);

    [Fact]
    public async Task Migrate_applies_every_migration_and_a_second_run_changes_nothing_in_the_catalog()
    {
        var connectionString = await server.CreateDatabaseAsync("migrate");

        var first = await OperatorCli.RunAsync(["migrate"], connectionString);
        Assert.True(first.ExitCode == 0, first.Output);
        Assert.Contains($"database current, {SchemaMigrator.EmbeddedMigrations().Count} migration(s) applied", first.Output);
        var history = await HistoryAsync(connectionString);
        var catalog = await SchemaDumpAsync(connectionString);
        Assert.Contains("CREATE TABLE public.todos_active_p15", catalog);

        var second = await OperatorCli.RunAsync(["migrate"], connectionString);
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Contains("database current, 0 migration(s) applied", second.Output);
        Assert.Equal(history, await HistoryAsync(connectionString));
        Assert.Equal(catalog, await SchemaDumpAsync(connectionString));
    }

    [Fact]
    public async Task The_partition_count_and_depth_limit_are_settings_at_creation()
    {
        var connectionString = await server.CreateDatabaseAsync("migrate32");
        var result = await OperatorCli.RunAsync(["migrate"], connectionString, ("Schema__ActivePartitions", "32"), ("Schema__MaxDepth", "3"));
        Assert.True(result.ExitCode == 0, result.Output);

        var partitions = await Sql.ColumnAsync<string>(connectionString,
            "SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname IN ('todos_active_p00', 'todos_active_p31', 'ai_interactions_p31') ORDER BY relname");
        Assert.Equal(["FOR VALUES WITH (modulus 32, remainder 31)", "FOR VALUES WITH (modulus 32, remainder 0)", "FOR VALUES WITH (modulus 32, remainder 31)"], partitions);
        Assert.Equal("CHECK (((depth >= 0) AND (depth <= 3)))", await Sql.ScalarAsync<string>(connectionString,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'todos_active_depth_check' AND conrelid = 'todos_active'::regclass"));

        // Later runs cannot change it (that is `partitions split`), and say so rather than ignore it silently.
        var again = await OperatorCli.RunAsync(["migrate"], connectionString);
        Assert.True(again.ExitCode == 0, again.Output);
        Assert.Contains("todos_active has 32 partitions; Schema:ActivePartitions=16 applies only when the schema is created", again.Output);
    }

    [Theory]
    [InlineData("Schema__ActivePartitions", "10", "Schema:ActivePartitions must be a power of two")]
    [InlineData("Schema__ActivePartitions", "1024", "Schema:ActivePartitions must be a power of two")]
    [InlineData("Schema__MaxDepth", "0", "Schema:MaxDepth must be from 1 to 32")]
    [InlineData("Schema__MaxDepth", "five", "bad Schema setting")]
    [InlineData("Schema__LockTimeout", "-00:00:01", "Schema:LockTimeout must be more than 0")]
    public async Task A_bad_setting_exits_2_naming_it_and_touches_nothing(string setting, string value, string message)
    {
        var connectionString = await server.CreateDatabaseAsync("migratebad");
        var result = await OperatorCli.RunAsync(["migrate"], connectionString, (setting, value));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(message, result.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"));
    }

    [Fact]
    public async Task An_edited_migration_stops_migrate_with_exit_1_naming_the_script()
    {
        var connectionString = await server.CreateDatabaseAsync("migrateedit");
        Assert.Equal(0, (await OperatorCli.RunAsync(["migrate"], connectionString)).ExitCode);
        // What an edit after the fact looks like to Evolve: the recorded checksum no longer matches the script.
        await Sql.ExecuteAsync(connectionString, "UPDATE public.schema_history SET checksum = 'D41D8CD98F00B204E9800998ECF8427E' WHERE version = '2'");

        var result = await OperatorCli.RunAsync(["migrate"], connectionString);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("invalid checksum for migration: V2__projects_and_todos.sql", result.Output);
    }

    [Fact]
    public async Task Another_migrate_holding_the_lock_makes_migrate_give_up_after_the_lock_timeout_with_exit_1()
    {
        var connectionString = await server.CreateDatabaseAsync("migratelock");
        await using var other = await Sql.OpenAsync(connectionString);
        await Sql.ExecuteAsync(other, $"SELECT pg_advisory_lock({SchemaMigrator.MigrateLockKey})");

        var result = await OperatorCli.RunAsync(["migrate"], connectionString, ("Schema__LockTimeout", "00:00:01"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("another migrate has held the schema lock", result.Output);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_class WHERE relname = 'todos_active'"));
    }

    [Trait(Traits.Needs, Traits.ServerTimers)]
    [Fact]
    public async Task A_table_lock_migrate_cannot_take_within_the_lock_timeout_exits_1_with_the_reason()
    {
        var connectionString = await server.CreateDatabaseAsync("migratetablelock");
        Assert.Equal(0, (await OperatorCli.RunAsync(["migrate"], connectionString)).ExitCode);
        await using var other = await Sql.OpenAsync(connectionString);
        await using var transaction = await other.BeginTransactionAsync();
        await Sql.ExecuteAsync(other, "LOCK TABLE public.schema_history IN ACCESS EXCLUSIVE MODE", transaction);

        var result = await OperatorCli.RunAsync(["migrate"], connectionString, ("Schema__LockTimeout", "00:00:01"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("lock timeout", result.Output);
        Assert.Contains("another session holds a lock migrate needs", result.Output);
    }

    private static async Task<string> SchemaDumpAsync(string connectionString)
    {
        var target = new NpgsqlConnectionStringBuilder(connectionString);
        var (exitCode, output) = await ProcessRunner.RunAsync(ProcessRunner.StartInfo(Path.Combine(PostgresServer.BinDirectory, "pg_dump"),
            ["--schema-only", "--no-comments", "-h", target.Host!, "-p", target.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", target.Username!, target.Database!]),
            Timeout);
        Assert.True(exitCode == 0, output);
        // pg_dump 15.14+ wraps the script in \restrict <random key> ... \unrestrict <key>: not part of the schema.
        return string.Join('\n', output.Split('\n').Where(line => !line.StartsWith("\\restrict", StringComparison.Ordinal) && !line.StartsWith("\\unrestrict", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task Migrate_without_a_connection_string_exits_2_naming_the_setting()
    {
        var result = await OperatorCli.RunAsync(["migrate"], connectionString: null);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("ConnectionStrings__todos", result.Output);
    }

    [Fact]
    public async Task Migrate_against_a_server_that_is_not_there_exits_1_with_the_reason()
    {
        var unreachable = new NpgsqlConnectionStringBuilder(server.ConnectionString("todos")) { Port = 1, Timeout = 2 }.ConnectionString;
        var result = await OperatorCli.RunAsync(["migrate"], unreachable);
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("migrate failed", result.Output);
        Assert.DoesNotContain("   at ", result.Output); // a readable message, not a stack trace
    }

    private static async Task<IReadOnlyList<string>> HistoryAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT type || ':' || coalesce(version, '') || ':' || name || ':' || coalesce(checksum, '') FROM public.schema_history ORDER BY id", connection);
        var rows = new List<string>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add(reader.GetString(0));
        }

        return rows;
    }
}
