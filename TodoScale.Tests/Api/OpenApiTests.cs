using System.Reflection;
using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using Microsoft.AspNetCore.Http.HttpResults;
using TodoScale.Api.Apis;
using TodoScale.Api.Errors;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>
/// The OpenAPI document the running API serves describes every operation: a summary and a description, every
/// parameter, request body and contract field described, every status the handler's typed results can answer declared (errors as
/// application/problem+json), the answers the pipeline adds (401, 403 for operators, 429), the bearer
/// requirement with the admin role where it applies, and examples for the main operations. The statuses are read
/// from the handlers' signatures here, by reflection, not from the document's own metadata.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class OpenApiTests(AppHostFixture fixture)
{
    private const string ProblemJson = "application/problem+json";

    /// <summary>The operations the issue names as main: each has request (where it takes a body) and response examples.</summary>
    private static readonly string[] Exemplified =
        [nameof(TodosApi.CreateTodo), nameof(TodosApi.ListTodos), nameof(TodosApi.CompleteTodo), nameof(SubtasksApi.MoveTodo), nameof(AiApi.AcceptAiSubtasks)];

    [Fact]
    public async Task The_document_lists_every_endpoint_with_bearer_auth_and_patch_fields_as_optional_plain_types()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        var document = await DocumentAsync(http);
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

    [Fact]
    public async Task Every_operation_has_a_summary_a_description_described_parameters_and_declares_every_status_it_can_answer()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        var document = await DocumentAsync(http);

        var operations = Operations(document).ToList();
        Assert.Equal(20, operations.Count);
        Assert.Empty(Check(document));
    }

    [Fact]
    public async Task The_check_finds_a_missing_summary_an_undescribed_parameter_or_field_an_undeclared_status_and_a_missing_example()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        var document = await DocumentAsync(http);
        var update = document["paths"]!["/api/todos/{id}"]!["patch"]!.AsObject();
        update.Remove("summary");
        update["responses"]!.AsObject().Remove("412");
        var list = document["paths"]!["/api/todos"]!["get"]!;
        list["parameters"]!.AsArray().Single(p => p!["name"]!.GetValue<string>() == "due_before")!.AsObject().Remove("description");
        document["paths"]!["/api/admin/reads"]!["get"]!["responses"]!.AsObject().Remove("403");
        document["paths"]!["/api/todos/{id}/move"]!["post"]!["requestBody"]!["content"]!["application/json"]!.AsObject().Remove("example");
        document["paths"]!["/api/projects"]!["post"]!["requestBody"]!.AsObject().Remove("description");
        document["components"]!["schemas"]!["TodoDto"]!["properties"]!["status"]!.AsObject().Remove("description");

        var failures = Check(document);

        Assert.Contains("PATCH /api/todos/{id}: no summary", failures);
        Assert.Contains("PATCH /api/todos/{id}: 412 (PreconditionFailedProblem) is not declared", failures);
        Assert.Contains("GET /api/todos: parameter due_before has no description", failures);
        Assert.Contains("GET /api/admin/reads: 403 (operators only) is not declared", failures);
        Assert.Contains("POST /api/todos/{id}/move: no request example", failures);
        Assert.Contains("POST /api/projects: the request body has no description", failures);
        Assert.Contains("schema TodoDto: property status has no description", failures);
        Assert.Equal(7, failures.Count);

        // A result whose status is decided at run time cannot be checked against the document, so it is a finding too.
        Assert.Equal([200, null], Statuses(typeof(Task<Results<Ok, ProblemHttpResult>>)).Select(s => s.Status));
    }

    /// <summary>Every way the document falls short, one line each.</summary>
    private static List<string> Check(JsonNode document)
    {
        var failures = new List<string>();
        var handlers = typeof(TodosApi).Assembly.GetTypes()
            .Where(t => t.Namespace == typeof(TodosApi).Namespace && t.IsAbstract && t.IsSealed) // static classes
            .SelectMany(t => t.GetMethods(BindingFlags.Public | BindingFlags.Static))
            .ToLookup(m => m.Name);

        foreach (var (method, path, operation) in Operations(document))
        {
            var name = $"{method.ToUpperInvariant()} {path}";
            if (string.IsNullOrWhiteSpace(operation["summary"]?.GetValue<string>()))
            {
                failures.Add($"{name}: no summary");
            }

            if (string.IsNullOrWhiteSpace(operation["description"]?.GetValue<string>()))
            {
                failures.Add($"{name}: no description");
            }

            if (operation["requestBody"] is { } requestBody && string.IsNullOrWhiteSpace(requestBody["description"]?.GetValue<string>()))
            {
                failures.Add($"{name}: the request body has no description");
            }

            foreach (var parameter in operation["parameters"]?.AsArray() ?? [])
            {
                if (string.IsNullOrWhiteSpace(parameter!["description"]?.GetValue<string>()))
                {
                    failures.Add($"{name}: parameter {parameter["name"]} has no description");
                }
            }

            var responses = operation["responses"]!.AsObject();
            foreach (var (status, response) in responses)
            {
                if (string.IsNullOrWhiteSpace(response!["description"]?.GetValue<string>()))
                {
                    failures.Add($"{name}: response {status} has no description");
                }

                if (status[0] is '4' or '5' && response["content"]?[ProblemJson] is null)
                {
                    failures.Add($"{name}: {status} is not declared as {ProblemJson}");
                }
            }

            var operationId = operation["operationId"]?.GetValue<string>() ?? "";
            var handler = handlers[operationId].ToList();
            if (handler.Count != 1)
            {
                failures.Add($"{name}: {handler.Count} handler methods are named after its operation id '{operationId}'");
                continue;
            }

            foreach (var (status, result) in Statuses(handler[0].ReturnType))
            {
                if (status is null)
                {
                    failures.Add($"{name}: {handler[0].Name} returns {result.Name}, whose status cannot be read from its type");
                }
                else if (!responses.ContainsKey(status.Value.ToString()))
                {
                    failures.Add($"{name}: {status} ({result.Name.Split('`')[0]}) is not declared");
                }
                else if (result == typeof(ValidationProblem)
                    && responses["400"]!["content"]?[ProblemJson]?["schema"]?["$ref"]?.GetValue<string>() != "#/components/schemas/HttpValidationProblemDetails")
                {
                    failures.Add($"{name}: 400 is not declared as the validation problem");
                }
            }

            // What the pipeline answers before a handler runs: no valid token, over budget; operators only.
            var admin = path.StartsWith("/api/admin/", StringComparison.Ordinal);
            var pipeline = new[] { (401, "no valid token"), (429, "over budget") }
                .Concat(admin ? [(403, "operators only")] : [])
                .Concat(operation["requestBody"] is null ? [] : [(415, "a body that is not JSON")]);
            foreach (var (status, why) in pipeline)
            {
                if (!responses.ContainsKey(status.ToString()))
                {
                    failures.Add($"{name}: {status} ({why}) is not declared");
                }
            }

            var roles = operation["security"]?.AsArray().SingleOrDefault()?["Bearer"]?.AsArray().Select(r => r!.GetValue<string>()).ToList();
            if (roles is null || roles.SequenceEqual(admin ? ["admin"] : []) is false)
            {
                failures.Add($"{name}: the bearer requirement is {(roles is null ? "missing" : $"[{string.Join(",", roles)}]")}");
            }

            if (Exemplified.Contains(operationId))
            {
                if (operation["requestBody"] is { } body && body["content"]?["application/json"]?["example"] is null)
                {
                    failures.Add($"{name}: no request example");
                }

                if (!responses.Any(r => r.Key[0] == '2' && r.Value!["content"]?["application/json"]?["example"] is not null))
                {
                    failures.Add($"{name}: no response example");
                }
            }
        }

        // Every field of TodoScale's own contracts says what it holds (ASP.NET Core's ProblemDetails types are RFC 9457's).
        foreach (var (schema, definition) in document["components"]!["schemas"]!.AsObject())
        {
            if (schema is "ProblemDetails" or "HttpValidationProblemDetails")
            {
                continue;
            }

            foreach (var (property, value) in definition!["properties"]?.AsObject() ?? [])
            {
                if (string.IsNullOrWhiteSpace(value!["description"]?.GetValue<string>()))
                {
                    failures.Add($"schema {schema}: property {property} has no description");
                }
            }
        }

        return failures;
    }

    /// <summary>
    /// The statuses a handler's typed results answer with: Results&lt;...&gt;'s members, each a type whose status
    /// is fixed (Ok, Created, NoContent, ValidationProblem, TodoScale's <see cref="StatusProblem"/>s). A member whose
    /// status is decided at run time (ProblemHttpResult, IResult) or unknown here comes back with none.
    /// </summary>
    private static IEnumerable<(int? Status, Type Result)> Statuses(Type returnType)
    {
        var type = returnType.IsGenericType && returnType.GetGenericTypeDefinition() == typeof(Task<>) ? returnType.GetGenericArguments()[0] : returnType;
        var members = type.IsGenericType && type.Name.StartsWith("Results`", StringComparison.Ordinal) ? type.GetGenericArguments() : [type];
        foreach (var member in members)
        {
            var definition = member.IsGenericType ? member.GetGenericTypeDefinition() : member;
            int? status = definition == typeof(Ok<>) || definition == typeof(Ok) ? 200
                : definition == typeof(Created<>) || definition == typeof(Created) ? 201
                : definition == typeof(NoContent) ? 204
                : definition == typeof(ValidationProblem) ? 400
                : typeof(StatusProblem).IsAssignableFrom(member) && !member.IsAbstract ? (int)member.GetField(nameof(NotFoundProblem.Status))!.GetRawConstantValue()!
                : null;
            yield return (status, member);
        }
    }

    private static IEnumerable<(string Method, string Path, JsonNode Operation)> Operations(JsonNode document) =>
        document["paths"]!.AsObject().SelectMany(p => p.Value!.AsObject().Select(o => (o.Key, p.Key, o.Value!)));

    private static async Task<JsonNode> DocumentAsync(HttpClient http) => JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;

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
