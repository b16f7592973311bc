using System.Text.RegularExpressions;
using Npgsql;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Schema;

/// <summary>
/// Plans PostgreSQL picks on a seeded tenant mix (a heavy user among 2,000 light ones): a user's queries touch one
/// partition (custom plan, generic plan, and under row-level security), and every index serves the query written
/// next to it in the migrations.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed partial class QueryPlanTests(PostgresServer server, ITestOutputHelper output)
{
    private const string UserPage =
        "SELECT id, title, status, due_date FROM todos_active WHERE user_id = {0} ORDER BY created_at DESC, id DESC LIMIT 50";

    private sealed record Seeded(string ConnectionString, Workload Workload);

    private Task<Seeded> SeededAsync() => server.SharedForAsync(GetType(), async () =>
    {
        var connectionString = await server.MigratedDatabaseForAsync(GetType());
        return new Seeded(connectionString, await Workload.SeedAsync(connectionString));
    });

    [Fact]
    public async Task A_users_page_scans_exactly_the_partition_PartitionHash_names()
    {
        var (connectionString, workload) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(connectionString);

        foreach (var user in workload.LightUsers.Take(20).Prepend(workload.HeavyUser))
        {
            var plan = await Plan.ExplainAsync(connection, string.Format(UserPage, $"'{user}'"));
            Assert.Equal([PartitionHash.PartitionName("todos_active", user, 16)], plan.Relations);
        }

        output.WriteLine(await Plan.TextAsync(connection, string.Format(UserPage, $"'{workload.HeavyUser}'")));
    }

    [Fact]
    public async Task Under_a_generic_plan_the_other_15_partitions_are_pruned_at_executor_start()
    {
        var (connectionString, workload) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(connectionString);
        await Sql.ExecuteAsync(connection, "SET plan_cache_mode = force_generic_plan");
        await Sql.ExecuteAsync(connection, $"PREPARE user_page(uuid) AS {string.Format(UserPage, "$1")}");

        var plan = await Plan.ExplainAsync(connection, $"EXECUTE user_page('{workload.HeavyUser}')");

        output.WriteLine(await Plan.TextAsync(connection, $"EXECUTE user_page('{workload.HeavyUser}')"));
        Assert.Equal([PartitionHash.PartitionName("todos_active", workload.HeavyUser, 16)], plan.Relations);
        Assert.Equal(15, plan.SubplansRemoved);
    }

    [Fact]
    public async Task Under_row_level_security_the_app_role_scans_only_its_tenants_partition()
    {
        var (connectionString, workload) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));
        await using var transaction = await connection.BeginTenantTransactionAsync(workload.HeavyUser);

        // No user_id in the query: the policy's user_id = current_setting('app.user_id')::uuid prunes by itself.
        const string query = "SELECT id FROM todos_active ORDER BY created_at DESC, id DESC LIMIT 50";
        var plan = await Plan.ExplainAsync(connection, query, transaction);
        output.WriteLine(await Plan.TextAsync(connection, query, transaction));

        Assert.Equal([PartitionHash.PartitionName("todos_active", workload.HeavyUser, 16)], plan.Relations);
        Assert.Equal(15, plan.SubplansRemoved);
        Assert.Equal(
            await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM todos_active WHERE user_id = '{workload.HeavyUser}'"),
            await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active", transaction));
    }

    [Fact]
    public async Task Every_index_serves_the_query_written_next_to_it_and_no_index_is_without_one()
    {
        var (connectionString, workload) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(connectionString);
        var documented = SchemaMigrator.EmbeddedMigrations()
            .SelectMany(name => IndexWithQuery().Matches(SchemaMigrator.ReadEmbeddedMigration(name)))
            .Select(match => (Index: match.Groups["index"].Value, Query: match.Groups["query"].Value))
            .ToList();

        var secondaryIndexes = await Sql.ColumnAsync<string>(connection, """
            SELECT x.indexrelid::regclass::text FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relnamespace = 'public'::regnamespace AND NOT x.indisunique AND NOT t.relispartition
            ORDER BY 1
            """);
        Assert.Equal(secondaryIndexes, documented.Select(d => d.Index).Order());

        var values = await ParameterValuesAsync(connection, workload);
        foreach (var (index, query) in documented)
        {
            var statement = Parameter().Replace(query, match => values[match.Groups[1].Value]);
            var plan = await Plan.ExplainAsync(connection, statement);
            var partitionIndexes = await Sql.ColumnAsync<string>(connection,
                $"SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = '{index}'::regclass");
            output.WriteLine($"{index}: {string.Join(", ", plan.Indexes.Distinct())}");
            Assert.True(plan.Indexes.Any(partitionIndexes.Contains), $"{index} is not used by its query:\n{statement}\n{await Plan.TextAsync(connection, statement)}");
        }
    }

    private static async Task<Dictionary<string, string>> ParameterValuesAsync(NpgsqlConnection connection, Workload workload)
    {
        var busiestParent = await Sql.ScalarAsync<Guid>(connection,
            $"SELECT parent_todo_id FROM todos_active WHERE user_id = '{workload.HeavyUser}' AND parent_todo_id IS NOT NULL GROUP BY 1 ORDER BY count(*) DESC LIMIT 1");
        return new Dictionary<string, string>
        {
            ["user_id"] = $"'{workload.HeavyUser}'::uuid",
            ["created_at"] = "now()",
            ["id"] = "'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid",
            ["status"] = "'in_progress'",
            ["due_date"] = "now()",
            ["priority"] = "6",
            ["parent_id"] = $"'{busiestParent}'::uuid",
            ["project_id"] = $"'{workload.HeavyProjects[0]}'::uuid",
            ["todo_id"] = $"'{workload.HeavyRoots[0]}'::uuid",
            ["completed_before"] = "now() - interval '30 days'",
            ["created_before"] = "now() - interval '90 days'",
            ["partition"] = $"{PartitionHash.PartitionIndex(workload.HeavyUser, 16):00}",
        };
    }

    [GeneratedRegex(@"^-- query: (?<query>.+?)\r?\nCREATE INDEX (?<index>\w+) ON", RegexOptions.Multiline)]
    private static partial Regex IndexWithQuery();

    [GeneratedRegex(@"@(\w+)")]
    private static partial Regex Parameter();
}
