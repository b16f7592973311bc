using System.Text.RegularExpressions;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Legacy;

/// <summary>
/// The whole migration on the original design's `todos` holding dirty data (<see cref="DirtyRows"/>): every kind of
/// value and broken tree point 3 of issue 21 names, written before `legacy start` (the backfill takes them) and again
/// after it (the dual-write trigger takes them), while a careless legacy application keeps writing NULLs and odd
/// statuses. Each row's fate is asserted, and the counts add up: rows in `todos` = taken + rejected.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed partial class LegacyDirtyDataTests(PostgresServer server, ITestOutputHelper log)
{
    /// <param name="skipRowTriggers">
    /// The backfill's batches without per-row triggers (the statement checks the chains itself), or with them
    /// (todos_active's depth trigger and the foreign keys check each row as well).
    /// </param>
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Dirty_rows_are_taken_by_the_rules_or_rejected_with_their_reason_through_backfill_kills_validate_switch_rollback_and_finalize(bool skipRowTriggers)
    {
        var db = await server.FreshMigratedDatabaseAsync($"legacy_dirty_{skipRowTriggers}");
        (string, string)[] settings = [("Legacy__SkipRowTriggers", skipRowTriggers ? "true" : "false")];
        await LegacyData.SeedAsync(db, users: 300, rootsPerUser: 10);
        await using var connection = await Sql.OpenAsync(db);
        var (other, otherTodo) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        await Sql.ExecuteAsync(connection, $"INSERT INTO todos (id, user_id, title) VALUES ('{otherTodo}', '{other}', 'another user''s todo')");

        // Before the start: the backfill takes these.
        var backfilled = new DirtyRows(Guid.CreateVersion7(), otherTodo);
        await backfilled.InsertAsync(connection);
        await Sql.ExecuteAsync(connection, backfilled.LaterWritesSql);

        var start = await OperatorCli.RunAsync(["legacy", "start"], db);
        Assert.True(start.ExitCode == 0, start.Output);

        // After it: the trigger takes these, as they are written; the legacy application's writes never fail.
        var triggered = new DirtyRows(Guid.CreateVersion7(), otherTodo);
        await triggered.InsertAsync(connection);
        await Sql.ExecuteAsync(connection, triggered.LaterWritesSql);
        AssertNoFailures("written through the trigger", await triggered.CheckAsync(connection, r => r.AfterTrigger ?? r.Fate, oldCopiesAllowed: true));
        Assert.Equal("delete", await Sql.ScalarAsync<string>(connection,
            $"SELECT operation FROM legacy_rejects WHERE id = (SELECT id FROM todos WHERE parent_todo_id = '{triggered.DeletedParent}')"));

        // The backfill, killed 5 times under a careless legacy writer, then run to the end.
        using var stop = new CancellationTokenSource();
        var writer = new LegacyWriter(db, [backfilled.UserId, triggered.UserId, other], dirty: true);
        var writing = writer.RunAsync(stop.Token);
        var (kills, positions, last) = await LegacyData.BackfillKilledAsync(db, kills: 5, log, writer, settings);
        Assert.Equal(skipRowTriggers, !last.Contains("per-row triggers on", StringComparison.Ordinal));
        log.WriteLine($"backfill killed {kills} times, at {string.Join(", ", positions)} rows copied; the writer made {writer.Changes} changes");
        await Progress.UntilAsync(() => writing.IsCompleted || (writer.Inserted.Count > 0 && writer.Changes >= 100),
            () => $"the writer made {writer.Changes} changes ({writer.Inserted.Count} inserted)");
        await stop.CancelAsync();
        await writing;

        AssertNoFailures("backfilled", await backfilled.CheckAsync(connection, r => r.Fate, oldCopiesAllowed: false));
        AssertNoFailures("written through the trigger, then backfilled", await triggered.CheckAsync(connection, r => r.Fate, oldCopiesAllowed: true));

        // Validate lists each rejected row with its reason, and the counts add up.
        var expectedRejects = backfilled.Rows.Concat(triggered.Rows).Where(r => r.Fate is RejectedFor).ToList();
        var failing = await OperatorCli.RunAsync(["legacy", "validate"], db);
        log.WriteLine(failing.Output.Trim().Split('\n')[^1]);
        Assert.True(failing.ExitCode == 1, failing.Output);
        foreach (var row in expectedRejects)
        {
            Assert.Contains($"todo {row.Id}: ", failing.Output);
            Assert.Matches($@"todo {row.Id}: (missing in TodoScale|content differs|equal in TodoScale, rejected since) \(rejected, {((RejectedFor)row.Fate).Reason}: ", failing.Output);
        }

        var counts = Counts().Match(failing.Output);
        Assert.True(counts.Success, failing.Output);
        var legacyRows = await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos");
        Assert.Equal(legacyRows, Number(counts, "rows"));
        Assert.Equal(expectedRejects.Count, Number(counts, "rejected"));
        Assert.Equal(legacyRows - expectedRejects.Count, Number(counts, "taken"));
        Assert.Equal(0L, Number(counts, "other"));
        Assert.Equal(expectedRejects.Count, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM legacy_rejects"));
        foreach (var reason in expectedRejects.GroupBy(r => ((RejectedFor)r.Fate).Reason))
        {
            Assert.Contains($"{reason.Key} {reason.Count()}", counts.Groups["reasons"].Value);
        }

        // Fixed at the source (the trigger takes a fixed row), then the backfill run again retries what is left.
        await Sql.ExecuteAsync(connection, backfilled.FixAtSourceSql + triggered.FixAtSourceSql);
        var retried = backfilled.FixedByRetry.Count + triggered.FixedByRetry.Count;
        Assert.Equal(retried, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM legacy_rejects"));
        var retry = await OperatorCli.RunAsync(["legacy", "backfill"], db, settings);
        Assert.True(retry.ExitCode == 0, retry.Output);
        Assert.Contains($"retried the rejected rows: read {retried} rows: {retried} taken, 0 rejected", retry.Output);
        AssertNoFailures("fixed", await backfilled.CheckAsync(connection, backfilled.FixedFate, oldCopiesAllowed: false));
        AssertNoFailures("fixed", await triggered.CheckAsync(connection, triggered.FixedFate, oldCopiesAllowed: false));

        var validate = await OperatorCli.RunAsync(["legacy", "validate"], db);
        Assert.True(validate.ExitCode == 0, validate.Output);
        legacyRows = await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos");
        Assert.Contains($"{legacyRows:N0} rows in todos: {legacyRows:N0} taken, 0 rejected, 0 other; {legacyRows:N0} rows in TodoScale, 0 only there; 0 mismatch(es)", validate.Output);
        log.WriteLine(validate.Output.Trim());

        foreach (var verb in new[] { "switch", "rollback", "switch" })
        {
            var run = await OperatorCli.RunAsync(["legacy", verb], db);
            Assert.True(run.ExitCode == 0, $"legacy {verb}: {run.Output}");
        }

        var finalize = await OperatorCli.RunAsync(["legacy", "finalize", "--force"], db);
        Assert.True(finalize.ExitCode == 0, finalize.Output);
        Assert.False(await Sql.ScalarAsync<bool>(connection, "SELECT to_regclass('todos') IS NOT NULL"));
        Assert.Equal(legacyRows, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, LegacyData.BrokenTrees));
        AssertNoFailures("finalized", await backfilled.CheckAsync(connection, backfilled.FixedFate, oldCopiesAllowed: false));
        AssertNoFailures("finalized", await triggered.CheckAsync(connection, triggered.FixedFate, oldCopiesAllowed: false));
    }

    private void AssertNoFailures(string when, List<string> failures)
    {
        foreach (var failure in failures)
        {
            log.WriteLine($"{when}: {failure}");
        }

        Assert.True(failures.Count == 0, $"{when}: {failures.Count} row(s) not as the rules say:\n{string.Join("\n", failures)}");
    }

    private static long Number(Match match, string group) =>
        long.Parse(match.Groups[group].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);

    [GeneratedRegex(@"(?<rows>[0-9,]+) rows in todos: (?<taken>[0-9,]+) taken, (?<rejected>[0-9,]+) rejected(?<reasons> \([^)]*\))?, (?<other>[0-9,]+) other;")]
    private static partial Regex Counts();
}
