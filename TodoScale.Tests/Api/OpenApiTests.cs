using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>The OpenAPI document describes every endpoint; the browsable UI is served in Development.</summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class OpenApiTests(AppHostFixture fixture)
{
    [Fact]
    public async Task The_document_lists_every_endpoint_with_bearer_auth_and_patch_fields_as_optional_plain_types()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var paths = document["paths"]!.AsObject().Select(p => p.Key).Order().ToList();
        Assert.Equal(
            new[]
            {
                "/api/admin/reads", "/api/me", "/api/projects", "/api/projects/{id}", "/api/todos", "/api/todos/{id}", "/api/todos/{id}/ai-interactions",
                "/api/todos/{id}/complete", "/api/todos/{id}/move", "/api/todos/{id}/reopen", "/api/todos/{id}/subtasks",
                "/api/todos/{id}/subtasks/ai", "/api/todos/{id}/subtree",
            }.Order(),
            paths);
        Assert.Equal("bearer", document["components"]!["securitySchemes"]!["Bearer"]!["scheme"]!.GetValue<string>());

        var update = document["components"]!["schemas"]!["UpdateTodoRequest"]!;
        Assert.Null(update["required"]);
        Assert.Equal("string", ResolveType(document, update["properties"]!["title"]!));

        using var ui = await http.GetAsync("/scalar/");
        Assert.True(ui.IsSuccessStatusCode, $"/scalar/ answered {(int)ui.StatusCode}");
        Assert.Contains("text/html", ui.Content.Headers.ContentType?.MediaType);
    }

    private static string? ResolveType(JsonNode document, JsonNode schema)
    {
        if (schema["$ref"]?.GetValue<string>() is { } reference)
        {
            schema = document["components"]!["schemas"]![reference.Split('/')[^1]]!;
        }

        return schema["type"] switch
        {
            JsonArray types => types.Select(t => t!.GetValue<string>()).First(t => t != "null"),
            { } type => type.GetValue<string>(),
            null => null,
        };
    }
}
