using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using TodoScale.Api.Apis;
using TodoScale.Api.Contracts;
using TodoScale.Api.Queries;

namespace TodoScale.Api.OpenApi;

/// <summary>
/// Request and response examples for the main operations, telling the story TodoScale.Api.http tells (a project
/// "Moving house", the todo "Plan the move", its subtask "Book a van", two subtasks a model proposed). Requests are
/// the .http file's bodies with its references resolved to the ids below; responses are typed contracts, serialized
/// as the API serializes them. HttpFileTests runs the .http file and holds both to it: each request example is one
/// of the file's bodies, and each response example has the shape and values (ids and times aside) of the answer
/// the real API gave that request.
/// </summary>
internal sealed class OperationExamples(IOptions<JsonOptions> json) : IOpenApiOperationTransformer
{
    public Task TransformAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        var name = operation.OperationId ?? "";
        if (ApiExamples.Requests.TryGetValue(name, out var request)
            && operation.RequestBody?.Content?.TryGetValue("application/json", out var requestMedia) == true)
        {
            requestMedia.Example = JsonNode.Parse(request);
        }

        if (ApiExamples.Responses.TryGetValue(name, out var response)
            && operation.Responses?.Values.FirstOrDefault(r => r.Content?.ContainsKey("application/json") == true) is { } success)
        {
            success.Content!["application/json"].Example = JsonSerializer.SerializeToNode(response, response.GetType(), json.Value.SerializerOptions);
        }

        if (ApiExamples.Parameters.TryGetValue(name, out var parameters))
        {
            foreach (var parameter in (operation.Parameters ?? []).OfType<OpenApiParameter>())
            {
                if (parameters.TryGetValue(parameter.Name!, out var value))
                {
                    parameter.Example = value.DeepClone();
                }
            }
        }

        return Task.CompletedTask;
    }
}

/// <summary>The examples' data (see <see cref="OperationExamples"/>).</summary>
internal static class ApiExamples
{
    public static readonly Guid UserId = Guid.Parse("0193a4b2-7c1d-7000-8000-000000000001");
    public static readonly Guid ProjectId = Guid.Parse("0193a4b2-8a00-7a3c-8f21-4b6c2d9e1a01");
    public static readonly Guid PlanId = Guid.Parse("0193a4b2-8a10-7b41-9c52-1e7f3a8d2b02");
    public static readonly Guid VanId = Guid.Parse("0193a4b2-8a20-7c55-a1d3-6b2e9f4c3d03");
    public static readonly Guid InteractionId = Guid.Parse("0193a4b2-8a30-7d12-b8e4-2c9a5f1e4e04");
    public static readonly Guid BooksId = Guid.Parse("0193a4b2-8a40-7e23-8a6f-3d1b7c2e5f05");
    public static readonly Guid InternetId = Guid.Parse("0193a4b2-8a40-7e24-9b7a-4e2c8d3f6a06");

    private static readonly DateTimeOffset Created = new(2026, 12, 1, 9, 30, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Due = new(2027, 1, 15, 9, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset Later = Created.AddMinutes(20);

    private static readonly TodoDto Plan = new(PlanId, null, ProjectId, "Plan the move", null, "todo", 1, Due, null, false, 0, Created, Created, null);
    private static readonly TodoDto Van = new(VanId, PlanId, null, "Book a van", null, "todo", 3, null, null, false, 1, Created.AddMinutes(1), Created.AddMinutes(1), null);
    private static readonly TodoDto Books = new(BooksId, PlanId, null, "Pack books", null, "todo", 3, null, null, true, 1, Created.AddMinutes(3), Created.AddMinutes(3), null);
    private static readonly TodoDto Internet = new(InternetId, PlanId, null, "Cancel internet", null, "todo", 2, null, null, true, 1, Created.AddMinutes(3), Created.AddMinutes(3), null);

    /// <summary>The first page of "open todos, most urgent first", two at a time.</summary>
    private static readonly Page<TodoDto> OpenByPriority = new(
        [Plan, Internet],
        new Cursor(TodoListQuery.ListName, "priority", false, Internet.CreatedAt, Internet.Id, Priority: Internet.Priority).Encode());

    /// <summary>Request bodies by operation id: TodoScale.Api.http's, with its references resolved.</summary>
    public static readonly IReadOnlyDictionary<string, string> Requests = new Dictionary<string, string>
    {
        [nameof(ProjectsApi.CreateProject)] = """{ "name": "Moving house" }""",
        [nameof(TodosApi.CreateTodo)] = $$"""{ "title": "Plan the move", "priority": 1, "dueDate": "2027-01-15T09:00:00Z", "projectId": "{{ProjectId}}" }""",
        [nameof(SubtasksApi.CreateSubtask)] = """{ "title": "Book a van" }""",
        [nameof(AiApi.RecordAiInteraction)] =
            """{ "kind": "generate_subtasks", "model": "gpt-4o-mini", "prompt": "Split 'Plan the move' into steps", "response": "[\"Pack books\",\"Cancel internet\"]", "tokensIn": 18, "tokensOut": 24, "latencyMs": 850 }""",
        [nameof(AiApi.AcceptAiSubtasks)] =
            $$"""{ "interactionId": "{{InteractionId}}", "subtasks": [ { "title": "Pack books" }, { "title": "Cancel internet", "priority": 2 } ] }""",
        [nameof(TodosApi.UpdateTodo)] = """{ "title": "Book a van for Saturday", "dueDate": null }""",
        [nameof(SubtasksApi.MoveTodo)] = """{ "parentId": null }""",
        [nameof(ProjectsApi.RenameProject)] = """{ "name": "Moved house" }""",
    };

    /// <summary>Success bodies by operation id.</summary>
    public static readonly IReadOnlyDictionary<string, object> Responses = new Dictionary<string, object>
    {
        [nameof(IdentityApi.GetMe)] = new MeResponse(UserId, false),
        [nameof(ProjectsApi.CreateProject)] = new ProjectDto(ProjectId, "Moving house", Created, Created),
        [nameof(TodosApi.CreateTodo)] = Plan,
        [nameof(SubtasksApi.CreateSubtask)] = Van,
        [nameof(AiApi.RecordAiInteraction)] = new AiInteractionDto(
            InteractionId, PlanId, "generate_subtasks", "gpt-4o-mini", "Split 'Plan the move' into steps", """["Pack books","Cancel internet"]""",
            18, 24, 850, Created.AddMinutes(2), null),
        [nameof(AiApi.AcceptAiSubtasks)] = new[] { Books, Internet },
        [nameof(SubtasksApi.GetSubtree)] = new TodoTreeDto(Plan, [new(Van, []), new(Books, []), new(Internet, [])]),
        [nameof(TodosApi.ListTodos)] = OpenByPriority,
        [nameof(TodosApi.CompleteTodo)] = new CompleteTodoResponse(
            Plan with { Status = "done", CompletedAt = Later, UpdatedAt = Later }, SubtasksCompleted: 3),
        [nameof(SubtasksApi.MoveTodo)] = Van with
        {
            Title = "Book a van for Saturday", Status = "done", CompletedAt = Later, ParentId = null, Depth = 0, UpdatedAt = Later.AddMinutes(1),
        },
    };

    /// <summary>Query parameter examples by operation id: the .http file's list, and its next page's cursor.</summary>
    public static readonly IReadOnlyDictionary<string, IReadOnlyDictionary<string, JsonNode>> Parameters = new Dictionary<string, IReadOnlyDictionary<string, JsonNode>>
    {
        [nameof(TodosApi.ListTodos)] = new Dictionary<string, JsonNode>
        {
            ["status"] = "todo,in_progress", ["sort"] = "priority", ["limit"] = 2, ["cursor"] = OpenByPriority.NextCursor!,
        },
    };
}
