using TodoScale.Data.Entities;

namespace TodoScale.Api.Contracts;

/// <summary>A todo as the API shows it; archivedAt is set for a todo the archiver has moved out of the active table.</summary>
public sealed record TodoDto(
    Guid Id,
    Guid? ParentId,
    Guid? ProjectId,
    string Title,
    string? Description,
    string Status,
    short Priority,
    DateTimeOffset? DueDate,
    DateTimeOffset? CompletedAt,
    bool AiGenerated,
    short Depth,
    DateTimeOffset CreatedAt,
    DateTimeOffset UpdatedAt,
    DateTimeOffset? ArchivedAt)
{
    public static TodoDto From(TodoColumns todo, DateTimeOffset? archivedAt = null) => new(
        todo.Id, todo.ParentTodoId, todo.ProjectId, todo.Title, todo.Description, todo.Status.ToDatabase(), todo.Priority,
        todo.DueDate, todo.CompletedAt, todo.AiGenerated, todo.Depth, todo.CreatedAt, todo.UpdatedAt, archivedAt);
}

/// <summary>One page of a list; <c>nextCursor</c> is null on the last page.</summary>
public sealed record Page<T>(IReadOnlyList<T> Items, string? NextCursor);

/// <summary>A todo with its subtasks, nested.</summary>
public sealed record TodoTreeDto(TodoDto Todo, IReadOnlyList<TodoTreeDto> Subtasks);

public sealed record CreateTodoRequest(
    string? Title,
    string? Description,
    string? Status,
    short? Priority,
    DateTimeOffset? DueDate,
    Guid? ProjectId,
    Guid? ParentId);

/// <summary>A partial update: only the fields present change; null clears description, dueDate and projectId.</summary>
public sealed record UpdateTodoRequest(
    Optional<string> Title,
    Optional<string> Description,
    Optional<string> Status,
    Optional<short?> Priority,
    Optional<DateTimeOffset?> DueDate,
    Optional<Guid?> ProjectId);

/// <summary>Moves a todo under another parent, or to the top level with parentId null.</summary>
public sealed record MoveTodoRequest(Guid? ParentId);

public sealed record ProjectDto(Guid Id, string Name, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt)
{
    public static ProjectDto From(Project project) => new(project.Id, project.Name, project.CreatedAt, project.UpdatedAt);
}

public sealed record ProjectRequest(string? Name);

public sealed record AiInteractionDto(
    Guid Id,
    Guid TodoId,
    string Kind,
    string Model,
    string Prompt,
    string? Response,
    int TokensIn,
    int TokensOut,
    int LatencyMs,
    DateTimeOffset CreatedAt,
    DateTimeOffset? ArchivedAt)
{
    public static AiInteractionDto From(AiInteractionColumns i, DateTimeOffset? archivedAt = null) => new(
        i.Id, i.TodoId, i.Kind, i.Model, i.Prompt, i.Response, i.TokensIn, i.TokensOut, i.LatencyMs, i.CreatedAt, archivedAt);
}

public sealed record RecordAiInteractionRequest(
    string? Kind,
    string? Model,
    string? Prompt,
    string? Response,
    int? TokensIn,
    int? TokensOut,
    int? LatencyMs);

/// <summary>Subtasks a model proposed for a todo, accepted together: all are created or none.</summary>
public sealed record AcceptAiSubtasksRequest(Guid? InteractionId, IReadOnlyList<AiSubtask>? Subtasks);

public sealed record AiSubtask(string? Title, string? Description, short? Priority, DateTimeOffset? DueDate);
