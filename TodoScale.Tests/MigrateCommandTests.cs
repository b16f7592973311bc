using Npgsql;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests;

/// <summary>The operators' `migrate` verb, run as the real CLI binary against a real PostgreSQL.</summary>
[Collection(PostgresCollection.Name)]
public sealed class MigrateCommandTests(PostgresServer server)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task Migrate_creates_the_history_table_and_a_second_run_changes_nothing()
    {
        var connectionString = await server.CreateDatabaseAsync("migrate");

        var first = await RunArchiverAsync(["migrate"], connectionString);
        Assert.True(first.ExitCode == 0, first.Output);
        Assert.Contains("database current", first.Output);
        var history = await HistoryAsync(connectionString);

        var second = await RunArchiverAsync(["migrate"], connectionString);
        Assert.True(second.ExitCode == 0, second.Output);
        Assert.Contains("0 migration(s) applied", second.Output);
        Assert.Equal(history, await HistoryAsync(connectionString));
    }

    [Fact]
    public async Task Migrate_without_a_connection_string_exits_2_naming_the_setting()
    {
        var result = await RunArchiverAsync(["migrate"], connectionString: null);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("ConnectionStrings__todos", result.Output);
    }

    [Fact]
    public async Task Migrate_against_a_server_that_is_not_there_exits_1_with_the_reason()
    {
        var unreachable = new NpgsqlConnectionStringBuilder(server.ConnectionString("todos")) { Port = 1, Timeout = 2 }.ConnectionString;
        var result = await RunArchiverAsync(["migrate"], unreachable);
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

    internal static Task<(int ExitCode, string Output)> RunArchiverAsync(string[] args, string? connectionString)
    {
        var info = ProcessRunner.StartInfo("dotnet", [RepositoryPaths.ProjectOutput("TodoScale.Archiver", "TodoScale.Archiver.dll"), .. args]);
        info.Environment.Remove("ConnectionStrings__todos");
        info.Environment["DOTNET_ENVIRONMENT"] = "Production"; // no user secrets: only what the test passes
        if (connectionString is not null)
        {
            info.Environment["ConnectionStrings__todos"] = connectionString;
        }

        return ProcessRunner.RunAsync(info, Timeout);
    }
}
