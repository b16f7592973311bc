using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>User B gets 404 on every one of user A's resources, for every verb, and A's data is untouched afterwards.</summary>
public abstract class TenantIsolationTests(AppHostFixture fixture)
{
    [EngineFact]
    public async Task Another_users_todos_projects_and_interactions_are_not_found_for_every_verb()
    {
        using var a = ApiClient.ForNewUser(fixture);
        using var b = ApiClient.ForNewUser(fixture);
        var project = (await a.PostAsync("/api/projects", new { name = "A's project" })).Is(Created).Id;
        var todo = await a.CreateTodoAsync("A's todo", new { projectId = project });
        var child = await a.CreateTodoAsync("A's subtask", parent: todo);
        (await a.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "summarize", model = "m", prompt = "p" })).Is(Created);
        var before = (await a.GetAsync($"/api/todos/{todo}")).Is(OK);
        var bTodo = await b.CreateTodoAsync("B's todo");

        var attempts = new (string Verb, Func<Task<Reply>> Call)[]
        {
            ("GET todo", () => b.GetAsync($"/api/todos/{todo}")),
            ("PATCH todo", () => b.PatchAsync($"/api/todos/{todo}", new { title = "mine now" })),
            ("DELETE todo", () => b.DeleteAsync($"/api/todos/{child}")),
            ("complete", () => b.PostAsync($"/api/todos/{child}/complete?cascade=true")),
            ("reopen", () => b.PostAsync($"/api/todos/{todo}/reopen")),
            ("create subtask", () => b.PostAsync($"/api/todos/{todo}/subtasks", new { title = "sneaky" })),
            ("create with parentId", () => b.PostAsync("/api/todos", new { title = "sneaky", parentId = todo })),
            ("create with projectId", () => b.PostAsync("/api/todos", new { title = "sneaky", projectId = project })),
            ("PATCH own todo into the project", () => b.PatchAsync($"/api/todos/{bTodo}", new { projectId = project })),
            ("subtree", () => b.GetAsync($"/api/todos/{todo}/subtree")),
            ("move", () => b.PostAsync($"/api/todos/{child}/move", new { parentId = (Guid?)null })),
            ("move own todo under it", () => b.PostAsync($"/api/todos/{bTodo}/move", new { parentId = todo })),
            ("record AI interaction", () => b.PostAsync($"/api/todos/{todo}/ai-interactions", new { kind = "summarize", model = "m", prompt = "p" })),
            ("list AI interactions", () => b.GetAsync($"/api/todos/{todo}/ai-interactions")),
            ("accept AI subtasks", () => b.PostAsync($"/api/todos/{todo}/subtasks/ai", new { subtasks = new[] { new { title = "x" } } })),
            ("GET project", () => b.GetAsync($"/api/projects/{project}")),
            ("PATCH project", () => b.PatchAsync($"/api/projects/{project}", new { name = "mine" })),
            ("DELETE project", () => b.DeleteAsync($"/api/projects/{project}")),
        };

        foreach (var (verb, call) in attempts)
        {
            var reply = await call();
            Assert.True(reply.Status == NotFound, $"{verb}: expected 404, got {(int)reply.Status}: {reply.Text}");
            Assert.Equal("application/problem+json", reply.MediaType);
        }

        Assert.Equal([bTodo], (await b.GetAsync("/api/todos?include_archived=true")).Is(OK).ItemIds);
        Assert.Empty((await b.GetAsync("/api/projects")).Is(OK).Items);

        var after = (await a.GetAsync($"/api/todos/{todo}")).Is(OK);
        Assert.Equal(before.ETag, after.ETag);
        Assert.Equal(project, after.Body!["projectId"]!.GetValue<Guid>());
        Assert.Equal([child, todo], (await a.GetAsync("/api/todos")).Is(OK).ItemIds);
        Assert.Single((await a.GetAsync($"/api/todos/{todo}/ai-interactions")).Is(OK).Items);
        Assert.Single((await a.GetAsync("/api/projects")).Is(OK).Items);
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class TenantIsolationTestsOnPostgres(AppHostFixture fixture) : TenantIsolationTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(CitusAppHostCollection.Name)]
[NeedsCitus]
public sealed class TenantIsolationTestsOnCitus(CitusAppHostFixture fixture) : TenantIsolationTests(fixture);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(PooledAppHostCollection.Name)]
public sealed class TenantIsolationTestsThroughPgBouncer(PooledAppHostFixture fixture) : TenantIsolationTests(fixture);
