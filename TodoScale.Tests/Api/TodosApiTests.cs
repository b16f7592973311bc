using System.Net;
using Aspire.Hosting.Testing;
using Npgsql;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>The todo and subtask endpoints of the real API (AppHost: primary + replica + Redis), each happy path and its errors.</summary>
public abstract class TodosApiTests(AppHostFixture fixture)
{
    [EngineFact]
    public async Task Create_returns_201_with_location_etag_and_a_uuid7_and_get_returns_the_same_todo()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var created = (await api.PostAsync("/api/todos", new { title = "Write the report", priority = 2, dueDate = "2026-12-01T09:00:00Z", description = "Q4" }))
            .Is(Created);
        Assert.NotNull(created.ETag);
        Assert.Equal(7, created.Id.Version);
        Assert.Equal("todo", created.Body!["status"]!.GetValue<string>());
        Assert.Equal(0, created.Body["depth"]!.GetValue<int>());

        var read = (await api.GetAsync($"/api/todos/{created.Id}")).Is(OK);
        Assert.Equal(created.ETag, read.ETag);
        Assert.Equal("Write the report", read.Body!["title"]!.GetValue<string>());
        Assert.Equal(2, read.Body["priority"]!.GetValue<int>());
        Assert.Equal(DateTimeOffset.Parse("2026-12-01T09:00:00Z"), read.Body["dueDate"]!.GetValue<DateTimeOffset>());

        (await api.GetAsync($"/api/todos/{Guid.CreateVersion7()}")).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task Bad_input_gets_a_400_problem_naming_the_field_and_never_a_500()
    {
        using var api = ApiClient.ForNewUser(fixture);
        (await api.PostAsync("/api/todos", """{"title":"x","colour":"red"}""")).NamesField("colour");
        (await api.PostAsync("/api/todos", """{"title":"x","priority":"high"}""")).NamesField("priority");
        (await api.PostAsync("/api/todos", """{"title":"x","dueDate":"next tuesday"}""")).NamesField("dueDate");
        (await api.PostAsync("/api/todos", new { title = new string('a', 501) })).NamesField("title");
        (await api.PostAsync("/api/todos", new { title = "   " })).NamesField("title");
        (await api.PostAsync("/api/todos", new { description = "no title" })).NamesField("title");
        (await api.PostAsync("/api/todos", new { title = "x", status = "someday" })).NamesField("status");
        (await api.PostAsync("/api/todos", new { title = "x", priority = 6 })).NamesField("priority");
        (await api.PostAsync("/api/todos", new { title = "x", parentId = "not-a-uuid" })).NamesField("parentId");
        (await api.PostAsync("/api/todos", """{"title":""")).IsProblem(BadRequest);
        (await api.GetAsync("/api/todos?cursor=bm90LWEtY3Vyc29y")).NamesField("cursor");
        (await api.GetAsync("/api/todos?cursor=%%%")).NamesField("cursor");
        (await api.GetAsync("/api/todos?limit=0")).NamesField("limit");
        (await api.GetAsync("/api/todos?limit=10000")).NamesField("limit");
        (await api.GetAsync("/api/todos?limit=ten")).NamesField("limit");
        (await api.GetAsync("/api/todos?status=someday")).NamesField("status");
        (await api.GetAsync("/api/todos?sort=colour")).NamesField("sort");
        (await api.GetAsync("/api/todos?due_before=soon")).NamesField("due_before");
        (await api.GetAsync("/api/todos?include_archived=maybe")).NamesField("include_archived");
        (await api.GetAsync("/api/todos/not-a-uuid")).NamesField("id");
        (await api.PatchAsync("/api/todos/not-a-uuid", new { title = "x" })).NamesField("id");
        (await api.DeleteAsync("/api/todos/12345")).NamesField("id");

        var id = await api.CreateTodoAsync("valid");
        (await api.PatchAsync($"/api/todos/{id}", new { title = new string('b', 501) })).NamesField("title");
        (await api.PatchAsync($"/api/todos/{id}", new { status = "finished" })).NamesField("status");
        (await api.PatchAsync($"/api/todos/{id}", """{"title":null}""")).NamesField("title");
        (await api.PatchAsync($"/api/todos/{id}", """{"id":"01a213bf-2cff-7c51-91a6-82ef0be74c62"}""")).NamesField("id");
        (await api.PostAsync($"/api/todos/{id}/complete?cascade=perhaps")).NamesField("cascade");

        // A cursor from one sort is refused by another, and one from an archived-merged list by an active-only list.
        for (var i = 0; i < 3; i++)
        {
            await api.CreateTodoAsync($"t{i}");
        }

        var byDue = (await api.GetAsync("/api/todos?sort=due&limit=1")).Is(OK);
        (await api.GetAsync($"/api/todos?sort=created&limit=1&cursor={byDue.NextCursor}")).NamesField("cursor");
        (await api.GetAsync($"/api/todos?sort=due&limit=1&include_archived=true&cursor={byDue.NextCursor}")).NamesField("cursor");
    }

    [EngineFact]
    public async Task List_pages_by_keyset_in_each_sort_without_gaps_or_repeats_and_filters()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var project = (await api.PostAsync("/api/projects", new { name = "Work" })).Is(Created).Id;
        var expected = new List<(Guid Id, int Priority, DateTimeOffset? Due, string Status)>();
        for (var i = 0; i < 11; i++)
        {
            var priority = i % 5 + 1;
            DateTimeOffset? due = i % 3 == 0 ? null : DateTimeOffset.Parse("2027-01-01T00:00:00Z").AddDays(i % 4);
            var status = i % 4 == 0 ? "done" : i % 4 == 1 ? "in_progress" : "todo";
            var id = await api.CreateTodoAsync($"todo {i}", new { priority, dueDate = due, status, projectId = i % 2 == 0 ? project : (Guid?)null });
            expected.Add((id, priority, due, status));
        }

        async Task<List<Guid>> AllPages(string query)
        {
            var ids = new List<Guid>();
            string? cursor = null;
            do
            {
                var page = (await api.GetAsync($"/api/todos?{query}&limit=4{(cursor is null ? "" : $"&cursor={cursor}")}")).Is(OK);
                Assert.True(page.Items.Count <= 4);
                ids.AddRange(page.ItemIds);
                cursor = page.NextCursor;
            }
            while (cursor is not null);
            return ids;
        }

        // UUIDv7 ids were made in creation order, which is also created_at order here.
        Assert.Equal(expected.Select(e => e.Id).Reverse(), await AllPages("sort=created"));
        Assert.Equal(
            expected.OrderBy(e => e.Priority).ThenBy(e => e.Id).Select(e => e.Id),
            await AllPages("sort=priority"));
        Assert.Equal(
            expected.OrderBy(e => e.Due is null).ThenBy(e => e.Due).ThenBy(e => e.Id).Select(e => e.Id),
            await AllPages("sort=due"));

        Assert.Equal(expected.Where(e => e.Status == "done").Select(e => e.Id).Reverse(), await AllPages("status=done"));
        Assert.Equal(
            expected.Where(e => e.Status != "done").Select(e => e.Id).Reverse(),
            await AllPages("status=todo,in_progress"));
        Assert.Equal(expected.Where((_, i) => i % 2 == 0).Select(e => e.Id).Reverse(), await AllPages($"project={project}"));
        Assert.Equal(expected.Where(e => e.Priority == 3).Select(e => e.Id).Reverse(), await AllPages("priority=3"));
        var cut = DateTimeOffset.Parse("2027-01-02T00:00:00Z");
        Assert.Equal(expected.Where(e => e.Due < cut).Select(e => e.Id).Reverse(), await AllPages("due_before=2027-01-02T00:00:00Z"));
        Assert.Equal(expected.Where(e => e.Due >= cut).Select(e => e.Id).Reverse(), await AllPages("due_after=2027-01-02T00:00:00Z"));

        var defaultPage = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal(11, defaultPage.Items.Count);
        Assert.Null(defaultPage.NextCursor);
    }

    [EngineFact]
    public async Task Include_archived_merges_archived_todos_in_order_across_pages()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var active = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            active.Add(await api.CreateTodoAsync($"active {i}"));
        }

        // Archived rows as the archiver leaves them, created between and around the active ones.
        var archived = new List<(Guid Id, DateTimeOffset CreatedAt)>();
        await using (var primary = new NpgsqlConnection(await fixture.App.GetConnectionStringAsync("todos")))
        {
            await primary.OpenAsync();
            var createdAt = await Sql.ColumnAsync<DateTime>(primary, $"SELECT created_at FROM todos_active WHERE user_id = '{api.UserId}' ORDER BY created_at");
            var moments = new[] { createdAt[0].AddSeconds(-1), createdAt[1].AddTicks(10), createdAt[3].AddTicks(10), createdAt[4].AddSeconds(1) };
            foreach (var moment in moments)
            {
                var id = Guid.CreateVersion7();
                await using var insert = new NpgsqlCommand(
                    """
                    INSERT INTO todos_archived (id, user_id, title, status, priority, completed_at, ai_generated, depth, created_at, updated_at, archived_at)
                    VALUES ($1, $2, 'archived', 'done', 3, $3, false, 0, $3, $3, now())
                    """, primary)
                { Parameters = { new() { Value = id }, new() { Value = api.UserId }, new() { Value = moment } } };
                await insert.ExecuteNonQueryAsync();
                archived.Add((id, new DateTimeOffset(moment, TimeSpan.Zero)));
            }
        }

        var onlyActive = (await api.GetAsync("/api/todos")).Is(OK);
        Assert.Equal(active.AsEnumerable().Reverse(), onlyActive.ItemIds);

        var merged = new List<Guid>();
        string? cursor = null;
        do
        {
            var page = (await api.GetAsync($"/api/todos?include_archived=true&limit=3{(cursor is null ? "" : $"&cursor={cursor}")}")).Is(OK);
            merged.AddRange(page.ItemIds);
            foreach (var item in page.Items)
            {
                Assert.Equal(archived.Any(a => a.Id == item!["id"]!.GetValue<Guid>()), item!["archivedAt"] is not null);
            }

            cursor = page.NextCursor;
        }
        while (cursor is not null);

        Guid[] expected = [archived[3].Id, active[4], archived[2].Id, active[3], active[2], archived[1].Id, active[1], active[0], archived[0].Id];
        Assert.Equal(expected, merged);

        // An archived todo is readable by id, marked as archived.
        var one = (await api.GetAsync($"/api/todos/{archived[0].Id}")).Is(OK);
        Assert.NotNull(one.Body!["archivedAt"]);
    }

    [EngineFact]
    public async Task Partial_update_changes_only_the_fields_sent_and_null_clears_a_nullable_field()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var id = await api.CreateTodoAsync("original", new { description = "keep me", priority = 1, dueDate = "2027-03-01T00:00:00Z" });

        var renamed = (await api.PatchAsync($"/api/todos/{id}", new { title = "renamed" })).Is(OK);
        Assert.Equal("renamed", renamed.Body!["title"]!.GetValue<string>());
        Assert.Equal("keep me", renamed.Body["description"]!.GetValue<string>());
        Assert.Equal(1, renamed.Body["priority"]!.GetValue<int>());
        Assert.NotNull(renamed.Body["dueDate"]);

        var cleared = (await api.PatchAsync($"/api/todos/{id}", """{"dueDate":null,"status":"in_progress"}""")).Is(OK);
        Assert.Null(cleared.Body!["dueDate"]);
        Assert.Equal("in_progress", cleared.Body["status"]!.GetValue<string>());
        Assert.Equal("keep me", cleared.Body["description"]!.GetValue<string>());

        var done = (await api.PatchAsync($"/api/todos/{id}", new { status = "cancelled" })).Is(OK);
        Assert.NotNull(done.Body!["completedAt"]);
        var reopened = (await api.PatchAsync($"/api/todos/{id}", new { status = "todo" })).Is(OK);
        Assert.Null(reopened.Body!["completedAt"]);

        (await api.PatchAsync($"/api/todos/{Guid.CreateVersion7()}", new { title = "x" })).IsProblem(NotFound);
        (await api.PatchAsync($"/api/todos/{id}", new { projectId = Guid.CreateVersion7() })).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task A_stale_if_match_gets_412_and_changes_nothing()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var created = (await api.PostAsync("/api/todos", new { title = "v1" })).Is(Created);
        var v2 = (await api.PatchAsync($"/api/todos/{created.Id}", new { title = "v2" }, ifMatch: created.ETag)).Is(OK);
        Assert.NotEqual(created.ETag, v2.ETag);

        (await api.PatchAsync($"/api/todos/{created.Id}", new { title = "v3" }, ifMatch: created.ETag)).IsProblem(PreconditionFailed);
        (await api.PostAsync($"/api/todos/{created.Id}/complete", ifMatch: created.ETag)).IsProblem(PreconditionFailed);
        (await api.PostAsync($"/api/todos/{created.Id}/move", new { parentId = (Guid?)null }, ifMatch: created.ETag)).IsProblem(PreconditionFailed);
        (await api.DeleteAsync($"/api/todos/{created.Id}", ifMatch: created.ETag)).IsProblem(PreconditionFailed);
        Assert.Equal("v2", (await api.GetAsync($"/api/todos/{created.Id}")).Is(OK).Body!["title"]!.GetValue<string>());

        (await api.PatchAsync($"/api/todos/{created.Id}", new { title = "v3" }, ifMatch: "*")).Is(OK);
        var current = (await api.GetAsync($"/api/todos/{created.Id}")).Is(OK);
        (await api.DeleteAsync($"/api/todos/{created.Id}", ifMatch: current.ETag)).Is(NoContent);
        (await api.GetAsync($"/api/todos/{created.Id}")).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task Subtasks_get_their_depth_the_limit_is_enforced_and_the_subtree_comes_back_nested()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var root = await api.CreateTodoAsync("root");
        var chain = new List<Guid> { root };
        for (var depth = 1; depth <= 5; depth++)
        {
            var reply = (await api.PostAsync($"/api/todos/{chain[^1]}/subtasks", new { title = $"level {depth}" })).Is(Created);
            Assert.Equal(depth, reply.Body!["depth"]!.GetValue<int>());
            Assert.Equal(chain[^1], reply.Body["parentId"]!.GetValue<Guid>());
            chain.Add(reply.Id);
        }

        var tooDeep = (await api.PostAsync($"/api/todos/{chain[^1]}/subtasks", new { title = "level 6" })).IsProblem(Conflict);
        Assert.Contains("5 levels", tooDeep.Body!["detail"]!.GetValue<string>());
        (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/subtasks", new { title = "orphan" })).IsProblem(NotFound);
        (await api.PostAsync("/api/todos", new { title = "orphan", parentId = Guid.CreateVersion7() })).IsProblem(NotFound);
        var sibling = await api.CreateTodoAsync("sibling", parent: root);

        var tree = (await api.GetAsync($"/api/todos/{root}/subtree")).Is(OK).Body!;
        Assert.Equal(root, tree["todo"]!["id"]!.GetValue<Guid>());
        var children = tree["subtasks"]!.AsArray().Select(c => c!["todo"]!["id"]!.GetValue<Guid>()).ToList();
        Assert.Equal([chain[1], sibling], children);
        var node = tree;
        for (var depth = 1; depth <= 5; depth++)
        {
            node = node["subtasks"]!.AsArray().Single(c => c!["todo"]!["id"]!.GetValue<Guid>() == chain[depth])!;
        }

        Assert.Empty(node["subtasks"]!.AsArray());
        (await api.GetAsync($"/api/todos/{Guid.CreateVersion7()}/subtree")).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task Completing_a_parent_with_open_subtasks_is_409_unless_cascade_completes_the_whole_subtree()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var root = await api.CreateTodoAsync("root");
        var child = await api.CreateTodoAsync("child", parent: root);
        var grandchild = await api.CreateTodoAsync("grandchild", parent: child);
        var doneChild = await api.CreateTodoAsync("done child", new { status = "done" }, parent: root);

        var refused = (await api.PostAsync($"/api/todos/{root}/complete")).IsProblem(Conflict);
        Assert.Contains("2 open subtask", refused.Body!["detail"]!.GetValue<string>());
        (await api.PatchAsync($"/api/todos/{root}", new { status = "done" })).IsProblem(Conflict);
        Assert.Equal("todo", (await api.GetAsync($"/api/todos/{child}")).Body!["status"]!.GetValue<string>());

        var completed = (await api.PostAsync($"/api/todos/{root}/complete?cascade=true")).Is(OK);
        Assert.Equal(2, completed.Body!["subtasksCompleted"]!.GetValue<int>());
        foreach (var id in new[] { root, child, grandchild, doneChild })
        {
            var todo = (await api.GetAsync($"/api/todos/{id}")).Is(OK).Body!;
            Assert.Equal("done", todo["status"]!.GetValue<string>());
            Assert.NotNull(todo["completedAt"]);
        }

        // Completing again changes nothing; reopening makes it open again without touching the subtasks.
        (await api.PostAsync($"/api/todos/{root}/complete")).Is(OK);
        var reopened = (await api.PostAsync($"/api/todos/{root}/reopen")).Is(OK);
        Assert.Equal("todo", reopened.Body!["status"]!.GetValue<string>());
        Assert.Null(reopened.Body["completedAt"]);
        Assert.Equal("done", (await api.GetAsync($"/api/todos/{child}")).Body!["status"]!.GetValue<string>());
        (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/complete")).IsProblem(NotFound);
        (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/reopen")).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task Move_reparents_a_subtree_and_refuses_cycles_depth_overflow_and_unknown_parents()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var a = await api.CreateTodoAsync("a");
        var b = await api.CreateTodoAsync("b", parent: a);
        var c = await api.CreateTodoAsync("c", parent: b);
        var other = await api.CreateTodoAsync("other");

        var moved = (await api.PostAsync($"/api/todos/{b}/move", new { parentId = other })).Is(OK);
        Assert.Equal(other, moved.Body!["parentId"]!.GetValue<Guid>());
        Assert.Equal(1, moved.Body["depth"]!.GetValue<int>());
        Assert.Equal(2, (await api.GetAsync($"/api/todos/{c}")).Body!["depth"]!.GetValue<int>());

        var top = (await api.PostAsync($"/api/todos/{b}/move", new { parentId = (Guid?)null })).Is(OK);
        Assert.Equal(0, top.Body!["depth"]!.GetValue<int>());
        Assert.Equal(1, (await api.GetAsync($"/api/todos/{c}")).Body!["depth"]!.GetValue<int>());

        Assert.Contains("cycle", (await api.PostAsync($"/api/todos/{b}/move", new { parentId = c })).IsProblem(Conflict).Body!["detail"]!.GetValue<string>());
        (await api.PostAsync($"/api/todos/{b}/move", new { parentId = b })).IsProblem(Conflict);
        (await api.PostAsync($"/api/todos/{b}/move", new { parentId = Guid.CreateVersion7() })).IsProblem(NotFound);
        (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/move", new { parentId = a })).IsProblem(NotFound);

        // b has one level below it: under a chain four deep it would reach level 6.
        var deep = a;
        for (var i = 0; i < 4; i++)
        {
            deep = await api.CreateTodoAsync($"deep {i}", parent: deep);
        }

        (await api.PostAsync($"/api/todos/{b}/move", new { parentId = deep })).IsProblem(Conflict);
        Assert.Equal(0, (await api.GetAsync($"/api/todos/{b}")).Body!["depth"]!.GetValue<int>());
    }

    [EngineFact]
    public async Task Delete_removes_the_subtree_and_its_ai_interactions()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var root = await api.CreateTodoAsync("root");
        var child = await api.CreateTodoAsync("child", parent: root);
        (await api.PostAsync($"/api/todos/{child}/ai-interactions", new { kind = "summarize", model = "m", prompt = "p" })).Is(Created);
        var keep = await api.CreateTodoAsync("keep");

        (await api.DeleteAsync($"/api/todos/{root}")).Is(NoContent);
        (await api.GetAsync($"/api/todos/{root}")).IsProblem(NotFound);
        (await api.GetAsync($"/api/todos/{child}")).IsProblem(NotFound);
        (await api.DeleteAsync($"/api/todos/{root}")).IsProblem(NotFound);
        Assert.Equal([keep], (await api.GetAsync("/api/todos")).Is(OK).ItemIds);
        Assert.Equal(0L, await Sql.ScalarAsync<long>(
            (await fixture.App.GetConnectionStringAsync("todos"))!, $"SELECT count(*) FROM ai_interactions WHERE user_id = '{api.UserId}'"));
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class TodosApiTestsOnPostgres(AppHostFixture fixture) : TodosApiTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(CitusAppHostCollection.Name)]
[NeedsCitus]
public sealed class TodosApiTestsOnCitus(CitusAppHostFixture fixture) : TodosApiTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(PooledAppHostCollection.Name)]
public sealed class TodosApiTestsThroughPgBouncer(PooledAppHostFixture fixture) : TodosApiTests(fixture);
