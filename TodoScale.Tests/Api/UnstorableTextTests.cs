using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>
/// Text PostgreSQL cannot store (a NUL character, a lone surrogate) is refused before the database, in every string
/// field of every endpoint, with a 400 naming the field; nothing is written. (The fuzzer's first finding: such a
/// title or project name was a 500 carrying the server's stack trace.)
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class UnstorableTextTests(AppHostFixture fixture)
{
    [Theory]
    [InlineData(@"\u0000")]
    [InlineData(@"a\u0000b")]
    [InlineData(@"\ud800")]
    [InlineData(@"ok \udfff then")]
    public async Task A_nul_or_a_lone_surrogate_is_a_400_naming_the_field_in_every_body_and_query(string bad)
    {
        using var api = ApiClient.ForNewUser(fixture);
        var todo = await api.CreateTodoAsync("holds the subtasks");
        var project = (await api.PostAsync("/api/projects", new { name = "kept" })).Is(Created).Id;

        (await api.PostAsync("/api/projects", $$"""{"name":"{{bad}}"}""")).NamesField("name");
        (await api.PatchAsync($"/api/projects/{project}", $$"""{"name":"{{bad}}"}""")).NamesField("name");
        (await api.PostAsync("/api/todos", $$"""{"title":"{{bad}}"}""")).NamesField("title");
        (await api.PostAsync("/api/todos", $$"""{"title":"fine","description":"{{bad}}"}""")).NamesField("description");
        (await api.PatchAsync($"/api/todos/{todo}", $$"""{"description":"{{bad}}"}""")).NamesField("description");
        (await api.PostAsync($"/api/todos/{todo}/subtasks", $$"""{"title":"{{bad}}"}""")).NamesField("title");
        (await api.PostAsync($"/api/todos/{todo}/ai-interactions",
            $$"""{"kind":"generate_subtasks","model":"m","prompt":"{{bad}}"}""")).NamesField("prompt");
        (await api.PostAsync($"/api/todos/{todo}/subtasks/ai",
            $$"""{"subtasks":[{"title":"first"},{"title":"second","description":"{{bad}}"}]}""")).NamesField("subtasks[1].description");
        (await api.GetAsync($"/api/todos?sort={Uri.EscapeDataString(System.Text.RegularExpressions.Regex.Unescape(bad))}")).IsProblem(BadRequest);

        // Nothing of it was written: the user has the one todo and the one project made above.
        Assert.Single((await api.GetAsync("/api/todos")).Is(OK).Items);
        var projects = (await api.GetAsync("/api/projects")).Is(OK).Items;
        Assert.Equal("kept", Assert.Single(projects)!["name"]!.GetValue<string>());
        Assert.Empty((await api.GetAsync($"/api/todos/{todo}/ai-interactions")).Is(OK).Items);
    }
}
