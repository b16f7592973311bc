using Aspire.Hosting.Testing;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>Projects and AI interactions through the real API.</summary>
public abstract class ProjectsAndAiApiTests(AppHostFixture fixture)
{
    [EngineFact]
    public async Task Projects_are_created_listed_by_name_renamed_and_deleted_and_their_todos_stay_without_a_project()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var names = new[] { "Garden", "Attic", "Work", "Books", "Cellar" };
        var ids = new Dictionary<string, Guid>();
        foreach (var name in names)
        {
            ids[name] = (await api.PostAsync("/api/projects", new { name })).Is(Created).Id;
        }

        (await api.PostAsync("/api/projects", new { name = "Work" })).IsProblem(Conflict);
        (await api.PostAsync("/api/projects", new { name = "" })).NamesField("name");
        (await api.PostAsync("/api/projects", new { name = new string('n', 201) })).NamesField("name");
        (await api.PostAsync("/api/projects", """{"name":"x","owner":"me"}""")).NamesField("owner");

        var listed = new List<string>();
        string? cursor = null;
        do
        {
            var page = (await api.GetAsync($"/api/projects?limit=2{(cursor is null ? "" : $"&cursor={cursor}")}")).Is(OK);
            listed.AddRange(page.Items.Select(i => i!["name"]!.GetValue<string>()));
            cursor = page.NextCursor;
        }
        while (cursor is not null);
        Assert.Equal(names.Order(StringComparer.Ordinal), listed);
        (await api.GetAsync("/api/projects?limit=0")).NamesField("limit");
        (await api.GetAsync("/api/projects?cursor=abc")).NamesField("cursor");

        var got = (await api.GetAsync($"/api/projects/{ids["Work"]}")).Is(OK);
        (await api.PatchAsync($"/api/projects/{ids["Work"]}", new { name = "Garden" })).IsProblem(Conflict);
        var renamed = (await api.PatchAsync($"/api/projects/{ids["Work"]}", new { name = "Office" }, ifMatch: got.ETag)).Is(OK);
        Assert.Equal("Office", renamed.Body!["name"]!.GetValue<string>());
        (await api.PatchAsync($"/api/projects/{ids["Work"]}", new { name = "Desk" }, ifMatch: got.ETag)).IsProblem(PreconditionFailed);
        (await api.PatchAsync($"/api/projects/{Guid.CreateVersion7()}", new { name = "Desk" })).IsProblem(NotFound);

        var todo = await api.CreateTodoAsync("file taxes", new { projectId = ids["Work"] });
        var inProject = (await api.GetAsync($"/api/todos?project={ids["Work"]}")).Is(OK);
        Assert.Equal([todo], inProject.ItemIds);

        (await api.DeleteAsync($"/api/projects/{ids["Work"]}")).Is(NoContent);
        (await api.GetAsync($"/api/projects/{ids["Work"]}")).IsProblem(NotFound);
        (await api.DeleteAsync($"/api/projects/{ids["Work"]}")).IsProblem(NotFound);
        var kept = (await api.GetAsync($"/api/todos/{todo}")).Is(OK);
        Assert.Null(kept.Body!["projectId"]);
        (await api.PostAsync("/api/todos", new { title = "x", projectId = ids["Work"] })).IsProblem(NotFound);
    }

    [EngineFact]
    public async Task Ai_interactions_are_recorded_and_listed_newest_first()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var todo = await api.CreateTodoAsync("plan the move");
        var recorded = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            var reply = (await api.PostAsync($"/api/todos/{todo}/ai-interactions",
                new { kind = "generate_subtasks", model = "gpt-test", prompt = $"prompt {i}", response = "[]", tokensIn = 12, tokensOut = 40, latencyMs = 900 })).Is(Created);
            Assert.Equal(todo, reply.Body!["todoId"]!.GetValue<Guid>());
            recorded.Add(reply.Id);
        }

        var first = (await api.GetAsync($"/api/todos/{todo}/ai-interactions?limit=2")).Is(OK);
        var second = (await api.GetAsync($"/api/todos/{todo}/ai-interactions?limit=2&cursor={first.NextCursor}")).Is(OK);
        Assert.Null(second.NextCursor);
        Assert.Equal(recorded.AsEnumerable().Reverse(), first.ItemIds.Concat(second.ItemIds));

        (await api.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "Generate Subtasks", model = "m", prompt = "p" })).NamesField("kind");
        (await api.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "summarize", prompt = "p" })).NamesField("model");
        (await api.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "summarize", model = "m", prompt = "p", tokensIn = -1 })).NamesField("tokensIn");
        (await api.PostAsync($"/api/todos/{Guid.CreateVersion7()}/ai-interactions", new { kind = "summarize", model = "m", prompt = "p" })).IsProblem(NotFound);
        (await api.GetAsync($"/api/todos/{Guid.CreateVersion7()}/ai-interactions")).IsProblem(NotFound);
        (await api.GetAsync($"/api/todos/{todo}/ai-interactions?limit=201")).NamesField("limit");
    }

    [EngineFact]
    public async Task An_ai_batch_creates_every_subtask_or_none()
    {
        using var api = ApiClient.ForNewUser(fixture);
        var todo = await api.CreateTodoAsync("plan the move");
        var interaction = (await api.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "generate_subtasks", model = "m", prompt = "split" })).Is(Created).Id;

        var bad = (await api.PostAsync($"/api/todos/{todo}/subtasks/ai",
            new { interactionId = interaction, subtasks = new object[] { new { title = "book a van" }, new { title = "" }, new { title = "pack", priority = 9 } } }))
            .NamesField("subtasks[1].title").NamesField("subtasks[2].priority");
        Assert.Equal(2, bad.Body!["errors"]!.AsObject().Count);
        (await api.PostAsync($"/api/todos/{todo}/subtasks/ai", """{"subtasks":[{"title":"a","colour":"red"}]}""")).NamesField("subtasks[0].colour");
        (await api.PostAsync($"/api/todos/{todo}/subtasks/ai", new { subtasks = Array.Empty<object>() })).NamesField("subtasks");
        (await api.PostAsync($"/api/todos/{todo}/subtasks/ai", new { subtasks = Enumerable.Range(0, 101).Select(i => new { title = $"t{i}" }) })).NamesField("subtasks");
        (await api.PostAsync($"/api/todos/{todo}/subtasks/ai", new { interactionId = Guid.CreateVersion7(), subtasks = new[] { new { title = "a" } } })).IsProblem(NotFound);
        Assert.Equal(0L, await SubtaskCount());

        // At the depth limit the whole batch is refused, not the part that fits.
        var deep = todo;
        for (var i = 0; i < 5; i++)
        {
            deep = await api.CreateTodoAsync($"level {i + 1}", parent: deep);
        }

        (await api.PostAsync($"/api/todos/{deep}/subtasks/ai", new { subtasks = new[] { new { title = "a" }, new { title = "b" } } })).IsProblem(Conflict);
        Assert.Equal(5L, await SubtaskCount());

        var accepted = (await api.PostAsync($"/api/todos/{todo}/subtasks/ai",
            new { interactionId = interaction, subtasks = new object[] { new { title = "book a van", priority = 1 }, new { title = "pack", dueDate = "2027-02-01T00:00:00Z" } } }))
            .Is(Created);
        var created = accepted.Body!.AsArray();
        Assert.Equal(2, created.Count);
        Assert.All(created, t =>
        {
            Assert.True(t!["aiGenerated"]!.GetValue<bool>());
            Assert.Equal(todo, t["parentId"]!.GetValue<Guid>());
            Assert.Equal(1, t["depth"]!.GetValue<int>());
        });
        Assert.Equal(7L, await SubtaskCount());

        // A batch shares one created_at: the subtree still lists it in the order the model proposed it.
        var titles = Enumerable.Range(0, 30).Select(i => $"step {i:00} ({Guid.NewGuid():N})").ToList();
        var parent = await api.CreateTodoAsync("a long plan");
        (await api.PostAsync($"/api/todos/{parent}/subtasks/ai", new { subtasks = titles.Select(t => new { title = t }) })).Is(Created);
        var tree = (await api.GetAsync($"/api/todos/{parent}/subtree")).Is(OK);
        Assert.Equal(titles, tree.Body!["subtasks"]!.AsArray().Select(t => t!["todo"]!["title"]!.GetValue<string>()));

        async Task<long> SubtaskCount() => await Sql.ScalarAsync<long>(
            (await fixture.App.GetConnectionStringAsync("todos"))!, $"SELECT count(*) FROM todos_active WHERE user_id = '{api.UserId}' AND parent_todo_id IS NOT NULL");
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class ProjectsAndAiApiTestsOnPostgres(AppHostFixture fixture) : ProjectsAndAiApiTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(CitusAppHostCollection.Name)]
[NeedsCitus]
public sealed class ProjectsAndAiApiTestsOnCitus(CitusAppHostFixture fixture) : ProjectsAndAiApiTests(fixture);
