using System.Text.RegularExpressions;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Partitions;

/// <summary>
/// `partitions doctor` run as an operator runs it (the CLI as a process) on a real PostgreSQL with a seeded tenant
/// mix: the migrations' documented statements prune to the user's partition and use an index; a filter that hides
/// user_id in a function reads every partition without an index and exits 1; bad input exits 2.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class QueryDoctorTests(PostgresServer server, ITestOutputHelper output)
{
    /// <summary>user_id hidden in a function: PostgreSQL cannot prune on it, nor use an index on user_id.</summary>
    private const string Hidden = "SELECT id FROM todos_active WHERE md5(user_id::text) = md5(@user_id::text) ORDER BY created_at DESC LIMIT 50";

    private sealed record Seeded(string ConnectionString, Workload Workload);

    private Task<Seeded> SeededAsync() => server.SharedForAsync(GetType(), async () =>
    {
        var connectionString = await server.MigratedDatabaseForAsync(GetType());
        return new Seeded(connectionString, await Workload.SeedAsync(connectionString));
    });

    [Fact]
    public async Task Every_documented_statement_of_a_user_reads_only_the_users_partition_through_an_index()
    {
        var (db, workload) = await SeededAsync();
        var user = workload.HeavyUser;
        var usersQueries = DocumentedQueries.All.Where(q => q.Sql.Contains("@user_id", StringComparison.Ordinal)).ToList();
        Assert.True(usersQueries.Count >= 8, $"{usersQueries.Count} documented statements of a user");
        foreach (var query in usersQueries)
        {
            var (exit, text) = await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--query", query.Index], db);
            Assert.True(exit == 0, text);
            Assert.Contains("verdict: OK", text);
            if (query.Table != "todos_archived") // archive months are by archived_at: a user's rows are in any of them
            {
                // The partition the doctor names is the one TodoScale's own hash names.
                Assert.Contains($" on {PartitionHash.PartitionName(query.Table, user, 16)}", text);
                Assert.Matches("generic plan [^\n]*: pruned at (executor start \\(15 subplans removed\\)|plan time)", text);
            }
        }

        output.WriteLine((await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--query", "todos_active_user_created_ix"], db)).Output);
    }

    [Fact]
    public async Task A_filter_that_hides_user_id_in_a_function_is_a_miss_unless_row_level_security_prunes_it()
    {
        var (db, workload) = await SeededAsync();
        var user = workload.LightUsers[7];
        var partition = PartitionHash.PartitionName("todos_active", user, 16);

        var (exit, text) = await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--as", "owner", "--sql", Hidden], db);
        output.WriteLine(text);
        Assert.Equal(1, exit);
        Assert.Contains("verdict: MISS", text);
        Assert.Contains($"reads 15 partition(s) of todos_active besides the user's {partition}", text);
        Assert.Matches(@"custom plan [^\n]*: not pruned to the user's partition", text);
        Assert.Matches(@"generic plan [^\n]*: not pruned to the user's partition", text);
        Assert.Matches(@"[0-9]+ read\(s\) without an index", text);

        // As the API runs it, row-level security's user_id = current_setting('app.user_id') prunes at executor start.
        var (appExit, appText) = await OperatorCli.RunAsync(["partitions", "doctor", "--user", $"{user}", "--sql", Hidden], db);
        output.WriteLine(appText);
        Assert.True(appExit == 0, appText);
        Assert.Contains("as todoscale_app (row-level security on)", appText);
        Assert.Matches(@"custom plan [^\n]*: pruned at executor start \(15 subplans removed\)", appText);
        Assert.Contains($" on {partition} using ", appText);
    }

    [Fact]
    public async Task Bad_input_exits_2_with_a_readable_message_and_changes_nothing()
    {
        var (db, workload) = await SeededAsync();
        var user = $"{workload.HeavyUser}";
        var tables = await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace");
        string[][] cases =
        [
            ["--user", "not-a-uuid", "--query", "todos_active_user_created_ix"],
            ["--query", "todos_active_user_created_ix"],
            ["--user", user],
            ["--user", user, "--query", "todos_active_user_created_ix", "--sql", "SELECT 1"],
            ["--user", user, "--query", "no_such_index"],
            ["--user", user, "--sql", "SELEC id FROM todos_active"],
            ["--user", user, "--sql", "SELECT id FROM todos_active WHERE user_id = @user_id::text"],
            ["--user", user, "--sql", "DROP TABLE todos_active"],
            ["--user", user, "--query", "todos_active_user_created_ix", "--param", "nonsense"],
            ["--user", user, "--query", "todos_active_user_created_ix", "--param", "no_such=1"],
            ["--user", user, "--query", "todos_active_user_created_ix", "--param", "created_at=not a time"],
        ];
        foreach (var args in cases)
        {
            var (exit, text) = await OperatorCli.RunAsync(["partitions", "doctor", .. args], db);
            output.WriteLine($"{string.Join(' ', args)} -> {exit}: {text.Trim()}");
            Assert.True(exit == 2, text);
            Assert.StartsWith("partitions doctor: ", text.Trim());
            Assert.DoesNotContain("   at ", text); // no stack trace
        }

        Assert.Equal(tables, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"));
        var (listed, list) = await OperatorCli.RunAsync(["partitions", "doctor", "--list"], db);
        Assert.Equal(0, listed);
        Assert.All(DocumentedQueries.All, q => Assert.Contains(q.Index, list));
    }
}
