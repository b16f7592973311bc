using Npgsql;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Partitions;

/// <summary>
/// `partitions status --indexes` run as an operator runs it on a real PostgreSQL: what pg_stat_user_indexes counts
/// per index, summed over its partitions, and the indexes no query scanned reported as unused once the statistics
/// have counted long enough, told apart by whether the migrations write a query above them.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class IndexUsageTests(PostgresServer server, ITestOutputHelper output)
{
    [Fact]
    public async Task Reports_scans_per_index_and_the_unused_ones_with_or_without_a_documented_query()
    {
        var db = await server.FreshMigratedDatabaseAsync("index_usage");
        var workload = await Workload.SeedAsync(db, heavyTodos: 200, lightUsers: 100, todosPerLightUser: 3);
        // An index no migration documents and no query uses.
        await Sql.ExecuteAsync(db, "CREATE INDEX todos_active_title_probe_ix ON todos_active (title)");

        // A user's first page, 30 times, on connections that close (a backend reports its counters when it ends),
        // then wait until the statistics show them. The partitions hold a few dozen rows each, where a sequential
        // scan is cheapest: it is switched off so the page is read as at scale, through its index.
        var unpooled = new NpgsqlConnectionStringBuilder(db) { Pooling = false }.ConnectionString;
        foreach (var user in workload.LightUsers.Take(30))
        {
            await using var connection = await Sql.OpenAsync(unpooled);
            await Sql.ExecuteAsync(connection, $"SET enable_seqscan = off; SET enable_bitmapscan = off; SELECT id FROM todos_active WHERE user_id = '{user}' ORDER BY created_at DESC, id DESC LIMIT 50");
        }

        const string scans = "SELECT coalesce(sum(s.idx_scan), 0)::bigint FROM pg_stat_user_indexes s JOIN pg_inherits i ON i.inhrelid = s.indexrelid WHERE i.inhparent = 'todos_active_user_created_ix'::regclass";
        await using (var watch = await Sql.OpenAsync(unpooled))
        {
            await Progress.UntilAsync<long>(watch, scans, n => n >= 30, () => false, "30 scans of todos_active_user_created_ix counted", TimeSpan.FromSeconds(60));
        }

        var counted = await Sql.ScalarAsync<long>(db, scans);

        var (exit, text) = await OperatorCli.RunAsync(["partitions", "status", "--indexes", "--unused-after", "0s"], db);
        output.WriteLine(text);
        Assert.True(exit == 0, text);
        var created = Row(text, "todos_active_user_created_ix");
        Assert.Contains("used", created);
        Assert.Contains($" {counted:N0} ", created); // PostgreSQL's own count, summed over the 16 partitions
        Assert.Matches(@"\b([1-9]|1[0-6]) of 16\b", created);
        Assert.Contains("unused: todos_active_title_probe_ix on todos_active", text);
        Assert.Contains("no query written above it: a candidate to drop", text);
        Assert.Contains("unused: ai_interactions_user_todo_ix on ai_interactions", text);
        Assert.Contains("though the migrations write its query: SELECT id FROM ai_interactions WHERE user_id = @user_id", text);
        Assert.DoesNotContain("unused: todos_active_user_created_ix", text);
        Assert.DoesNotContain("unused: todos_active_pkey", text); // a constraint's index is kept whatever its scans
        Assert.Matches(@"indexes: [0-9]+ on [0-9]+ tables \([0-9]+ with their partitions\), [0-9]+ used, [0-9]+ unused", text);

        // With the default window (14 days) statistics this young judge nothing unused yet.
        var (young, youngText) = await OperatorCli.RunAsync(["partitions", "status", "--indexes"], db);
        Assert.Equal(0, young);
        Assert.DoesNotContain("unused: ", youngText);
        Assert.Contains("not scanned yet", Row(youngText, "todos_active_title_probe_ix"));

        var (bad, badText) = await OperatorCli.RunAsync(["partitions", "status", "--indexes", "--unused-after", "a fortnight"], db);
        Assert.Equal(2, bad);
        Assert.Contains("--unused-after 'a fortnight' is not a duration", badText);
    }

    /// <summary>The report's table row of one index.</summary>
    private static string Row(string text, string index) =>
        text.Split('\n').FirstOrDefault(l => l.Contains($" {index} ", StringComparison.Ordinal) && l.Contains('│')) ?? $"(no row for {index})";
}
