using System.Net;
using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using TodoScale.Archiver.Legacy;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Legacy;

/// <summary>
/// The whole migration on a running stack of its own (AppHost: primary, replica, Redis, the API, the archiver service), as an
/// operator runs it while the legacy application writes to `todos` and a user works through the API: the API serves
/// from `todos` until the switch, from TodoScale's tables after it, from `todos` again after a rollback, and never
/// restarts.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(LegacyStackCollection.Name)]
public sealed class LegacySwitchTests(AppHostFixture fixture, ITestOutputHelper log)
{
    private static readonly TimeSpan ServingChange = TimeSpan.FromSeconds(15);

    [Fact]
    public async Task Start_backfill_killed_10_times_validate_switch_api_writes_rollback_switch_finalize_with_every_id_accounted_for()
    {
        var db = (await fixture.App.GetConnectionStringAsync("todos"))!;
        using var api = ApiClient.ForNewUser(fixture);
        using var admin = ApiClient.ForNewUser(fixture, admin: true);
        using var stop = new CancellationTokenSource();
        var writing = Task.CompletedTask;
        try
        {
            // Before any migration the API serves from TodoScale's tables, where this user has nothing yet; the
            // empty first page is cached.
            Assert.Empty((await api.GetAsync("/api/todos")).Is(HttpStatusCode.OK).Items);
            await LegacyData.SeedAsync(db, users: 1_500, rootsPerUser: 8, alsoUser: api.UserId);
            // Two rows as a careless legacy application wrote them: one the rules take (odd status, NULL priority,
            // depth, ai_generated and created_at), one they reject (a status TodoScale does not know).
            var (dirty, unknown) = (Guid.CreateVersion7(), Guid.CreateVersion7());
            await Sql.ExecuteAsync(db,
                $"""
                INSERT INTO todos (id, user_id, title, status, priority, depth, ai_generated, created_at, updated_at)
                VALUES ('{dirty}', '{api.UserId}', 'written carelessly', 'In Progress', NULL, NULL, NULL, NULL, '2026-01-11 11:00+00'),
                       ('{unknown}', '{api.UserId}', 'an unknown status', 'archived', 3, 0, false, now(), now())
                """);
            var legacyRoots = await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM todos WHERE user_id = '{api.UserId}' AND parent_todo_id IS NULL AND id <> '{unknown}'");

            var start = await OperatorCli.RunAsync(["legacy", "start"], db);
            Assert.True(start.ExitCode == 0, start.Output);
            await ServingFromAsync(admin, "todos");

            // Served from `todos`, which nothing has copied yet (no cached page from before the start either).
            Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM todos_active WHERE user_id = '{api.UserId}'"));
            var page = (await api.GetAsync("/api/todos?limit=100")).Is(HttpStatusCode.OK);
            Assert.Equal(legacyRoots, page.Items.Count(i => i!["parentId"] is null));
            Assert.NotEqual("cache", page.ReadSource);

            // Served by the rules: the careless row as TodoScale will hold it, the rejected one not at all (as after the switch).
            var served = (await api.GetAsync($"/api/todos/{dirty}")).Is(HttpStatusCode.OK).Body!;
            Assert.Equal("in_progress", served["status"]!.GetValue<string>());
            Assert.Equal(3, served["priority"]!.GetValue<int>());
            Assert.Equal(0, served["depth"]!.GetValue<int>());
            Assert.False(served["aiGenerated"]!.GetValue<bool>());
            Assert.Equal(new DateTimeOffset(2026, 1, 11, 11, 0, 0, TimeSpan.Zero), served["createdAt"]!.GetValue<DateTimeOffset>());
            (await api.GetAsync($"/api/todos/{unknown}")).IsProblem(HttpStatusCode.NotFound);
            Assert.DoesNotContain(page.Items, i => i!["id"]!.GetValue<Guid>() == unknown);

            // The API writes `todos` (and the trigger the new tables) under TodoScale's rules: depth computed, a
            // bad parent refused with the same 4xx as after the switch.
            var root = await api.CreateTodoAsync("written through the API before the switch");
            var child = await api.CreateTodoAsync("its subtask", parent: root);
            Assert.Equal(1, await Sql.ScalarAsync<int>(db, $"SELECT depth FROM todos WHERE id = '{child}'"));
            Assert.Equal(1, await Sql.ScalarAsync<short>(db, $"SELECT depth FROM todos_active WHERE user_id = '{api.UserId}' AND id = '{child}'"));
            (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/subtasks", new { title = "no such parent" })).IsProblem(HttpStatusCode.NotFound);

            // The legacy application keeps writing from here on; the backfill is killed 10 times and resumed.
            var writer = new LegacyWriter(db, leaveAlone: api.UserId);
            writing = writer.RunAsync(stop.Token);
            var (kills, positions, _) = await LegacyData.BackfillKilledAsync(db, kills: 10, log, writer);
            log.WriteLine($"backfill killed {kills} times, at positions {string.Join(", ", positions)}; the writer made {writer.Changes} changes so far");
            var refused = await OperatorCli.RunAsync(["legacy", "validate"], db);
            Assert.True(refused.ExitCode == 1, refused.Output);
            Assert.Contains($"todo {unknown}: missing in TodoScale (rejected, unknown_status: status 'archived' is none of", refused.Output);
            // Fixed at the source: the trigger takes it, and the API serves it.
            await Sql.ExecuteAsync(db, $"UPDATE todos SET status = 'todo' WHERE id = '{unknown}'");
            // Written on the primary outside the API (no read-your-writes position for it): the user's reads may come
            // from the replica, which serves it once it has replayed the fix.
            await Eventually.ValueAsync("the fixed row served", () => api.GetAsync($"/api/todos/{unknown}"),
                reply => reply.Status == HttpStatusCode.OK, TimeSpan.FromSeconds(60));
            var validate = await OperatorCli.RunAsync(["legacy", "validate"], db);
            Assert.True(validate.ExitCode == 0 && validate.Output.Contains(" 0 mismatch(es)", StringComparison.Ordinal), validate.Output);
            log.WriteLine(validate.Output.Trim());

            // Switch while the legacy application still writes: it keeps reaching both sides.
            var switched = await OperatorCli.RunAsync(["legacy", "switch"], db);
            Assert.True(switched.ExitCode == 0, switched.Output);
            log.WriteLine(switched.Output.Trim());
            await ServingFromAsync(admin, "todoscale");
            // The legacy application writes on after the switch (seen: a few more changes, not a guessed time).
            var changesAtSwitch = writer.Changes;
            await Progress.UntilAsync(() => writing.IsCompleted || writer.Changes >= changesAtSwitch + 20,
                () => $"the legacy writer made {writer.Changes - changesAtSwitch} changes after the switch");

            // Writes through the API on TodoScale's tables, each carried back to `todos` by the reverse trigger.
            var project = (await api.PostAsync("/api/projects", new { name = "after the switch" })).Is(HttpStatusCode.Created).Id;
            var fresh = await api.CreateTodoAsync("written after the switch", new { projectId = project, priority = 1 });
            var freshChild = await api.CreateTodoAsync("its subtask", parent: fresh);
            await api.CreateTodoAsync("a grandchild", parent: freshChild);
            (await api.PatchAsync($"/api/todos/{root}", new { title = "renamed after the switch" })).Is(HttpStatusCode.OK);
            // The careless row, edited on TodoScale's side, reaches `todos` as TodoScale holds it.
            (await api.PatchAsync($"/api/todos/{dirty}", new { title = "edited after the switch" })).Is(HttpStatusCode.OK);
            Assert.Equal("in_progress 3 0", await Sql.ScalarAsync<string>(db, $"SELECT status || ' ' || priority || ' ' || depth FROM todos WHERE id = '{dirty}'"));
            (await api.PostAsync($"/api/todos/{fresh}/complete?cascade=true")).Is(HttpStatusCode.OK);
            (await api.PostAsync($"/api/todos/{freshChild}/move", new { parentId = root })).Is(HttpStatusCode.OK);
            var legacyTree = page.Items.First(i => i!["parentId"] is null)!["id"]!.GetValue<Guid>();
            (await api.DeleteAsync($"/api/todos/{legacyTree}")).Is(HttpStatusCode.NoContent);
            (await api.DeleteAsync($"/api/projects/{project}")).Is(HttpStatusCode.NoContent);
            Assert.Equal("renamed after the switch", await Sql.ScalarAsync<string>(db, $"SELECT title FROM todos WHERE id = '{root}'"));
            Assert.Equal(2, await Sql.ScalarAsync<int>(db, $"SELECT t.depth FROM todos t JOIN todos p ON p.id = t.parent_todo_id WHERE p.id = '{freshChild}'"));
            Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM todos WHERE id = '{legacyTree}' OR parent_todo_id = '{legacyTree}'"));
            Assert.Equal(0L, await Sql.ScalarAsync<long>(db, $"SELECT count(*) FROM todos WHERE project_id = '{project}'"));

            await stop.CancelAsync();
            await writing;
            Assert.True(writer.Changes > changesAtSwitch, "the legacy writer made no change after the switch");

            // Rollback: instant, the API serves from `todos` again, and `todos` is the new side row for row.
            var rollback = await OperatorCli.RunAsync(["legacy", "rollback"], db);
            Assert.True(rollback.ExitCode == 0, rollback.Output);
            await ServingFromAsync(admin, "todos");
            Assert.Equal(await Sql.ScalarAsync<string>(db, LegacyData.TodoScaleChecksum), await Sql.ScalarAsync<string>(db, LegacyData.LegacyChecksum));
            Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM legacy_rejects"));
            var subtree = (await api.GetAsync($"/api/todos/{root}/subtree")).Is(HttpStatusCode.OK);
            Assert.Equal("renamed after the switch", subtree.Body!["todo"]!["title"]!.GetValue<string>());
            Assert.Contains(subtree.Body!["subtasks"]!.AsArray(), s => s!["todo"]!["id"]!.GetValue<Guid>() == freshChild);
            var reopened = (await api.PostAsync($"/api/todos/{fresh}/reopen")).Is(HttpStatusCode.OK);
            Assert.Equal("todo", reopened.Body!["status"]!.GetValue<string>());

            // Switch again (from the rollback), and finalize: refused inside the window, then forced.
            Assert.Equal(0, (await OperatorCli.RunAsync(["legacy", "switch"], db)).ExitCode);
            await ServingFromAsync(admin, "todoscale");
            var early = await OperatorCli.RunAsync(["legacy", "finalize"], db);
            Assert.True(early.ExitCode == 1 && early.Output.Contains("the retention window runs until", StringComparison.Ordinal), early.Output);
            var ids = await Sql.ColumnAsync<Guid>(db, "SELECT id FROM todos ORDER BY id");
            var checksum = await Sql.ScalarAsync<string>(db, LegacyData.LegacyChecksum);
            var finalize = await OperatorCli.RunAsync(["legacy", "finalize", "--force"], db);
            Assert.True(finalize.ExitCode == 0, finalize.Output);
            log.WriteLine(finalize.Output.Trim());

            // Every id accounted for: what `todos` held at the end is what TodoScale holds, content included.
            Assert.False(await Sql.ScalarAsync<bool>(db, "SELECT to_regclass('todos') IS NOT NULL"));
            Assert.Equal(ids, await Sql.ColumnAsync<Guid>(db, "SELECT id FROM (SELECT id FROM todos_active UNION ALL SELECT id FROM todos_archived) s ORDER BY id"));
            Assert.Equal(checksum, await Sql.ScalarAsync<string>(db, LegacyData.TodoScaleChecksum));
            Assert.Equal(6L, await Sql.ScalarAsync<long>(db,
                "SELECT count(DISTINCT action) FROM audit_log WHERE action IN ('legacy.start', 'legacy.backfill', 'legacy.validate', 'legacy.switch', 'legacy.rollback', 'legacy.finalize')"));
            var after = (await api.GetAsync($"/api/todos/{root}/subtree")).Is(HttpStatusCode.OK);
            Assert.Equal("renamed after the switch", after.Body!["todo"]!["title"]!.GetValue<string>());
            log.WriteLine($"{ids.Count} ids in todos at the end, all in TodoScale; the legacy writer made {writer.Changes} changes ({writer.Inserted.Count} inserts, {writer.Deleted.Count} deleted)");
        }
        finally
        {
            // The legacy writer stops before the stack does, whatever happened.
            await stop.CancelAsync();
            await writing.ContinueWith(_ => { }, TaskScheduler.Default);
        }
    }

    /// <summary>Waits until the API says it serves from <paramref name="source"/> (it polls the phase; no restart).</summary>
    private static async Task ServingFromAsync(ApiClient admin, string source)
    {
        await Eventually.ValueAsync($"the API serving from {source}",
            async () => (await admin.GetAsync("/api/admin/reads")).Is(HttpStatusCode.OK).Body!,
            reads => reads["servingFrom"]!.GetValue<string>() == source, ServingChange);
    }
}

/// <summary>
/// A stack of its own: a migration changes what the whole API serves from, and starts from empty TodoScale tables.
/// Collections run one at a time, so it never runs beside the shared stack.
/// </summary>
[CollectionDefinition(Name)]
public sealed class LegacyStackCollection : ICollectionFixture<AppHostFixture>
{
    public const string Name = "legacy-stack";
}
