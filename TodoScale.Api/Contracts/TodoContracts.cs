using TodoScale.Data.Entities;

namespace TodoScale.Api.Contracts;

/// <summary>A todo as the API shows it; archivedAt is set for a todo the archiver has moved out of the active table.</summary>
/// <param name="Id">The todo's id (a UUIDv7: ids sort by creation time).</param>
/// <param name="ParentId">The todo it is a subtask of; null for a top-level todo.</param>
/// <param name="ProjectId">The project it belongs to; null for none.</param>
/// <param name="Title">What to do (1 to 500 characters).</param>
/// <param name="Description">Details (up to 20,000 characters); null for none.</param>
/// <param name="Status">`todo`, `in_progress`, `done` or `cancelled`.</param>
/// <param name="Priority">1 (most urgent) to 5.</param>
/// <param name="DueDate">When it is due; null for no due date.</param>
/// <param name="CompletedAt">When it was finished (`done` or `cancelled`); null while open.</param>
/// <param name="AiGenerated">Whether a model proposed it (accepted through the AI batch).</param>
/// <param name="Depth">0 for a top-level todo, its parent's + 1 for a subtask.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="UpdatedAt">When it last changed; its `ETag` is made from this.</param>
/// <param name="ArchivedAt">When the archiver moved it to the archive; null for an active todo.</param>
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
/// <param name="Items">This page's items, in the list's order.</param>
/// <param name="NextCursor">Pass as `cursor` (with the same filters and sort) for the next page; null on the last page.</param>
public sealed record Page<T>(IReadOnlyList<T> Items, string? NextCursor);

/// <summary>A todo with its subtasks, nested.</summary>
/// <param name="Todo">The todo at this node.</param>
/// <param name="Subtasks">Its direct subtasks, oldest first, each with its own subtasks.</param>
public sealed record TodoTreeDto(TodoDto Todo, IReadOnlyList<TodoTreeDto> Subtasks);

/// <summary>A new todo: only the title is required.</summary>
/// <param name="Title">What to do: 1 to 500 characters.</param>
/// <param name="Description">Details, up to 20,000 characters.</param>
/// <param name="Status">`todo` (the default), `in_progress`, `done` or `cancelled`.</param>
/// <param name="Priority">1 (most urgent) to 5; default 3.</param>
/// <param name="DueDate">When it is due (ISO 8601; stored in UTC).</param>
/// <param name="ProjectId">One of your projects.</param>
/// <param name="ParentId">One of your active todos, to create this one as its subtask.</param>
public sealed record CreateTodoRequest(
    string? Title,
    string? Description = null,
    string? Status = null,
    short? Priority = null,
    DateTimeOffset? DueDate = null,
    Guid? ProjectId = null,
    Guid? ParentId = null);

/// <summary>A partial update: only the fields present change; null clears description, dueDate and projectId.</summary>
/// <param name="Title">A new title: 1 to 500 characters.</param>
/// <param name="Description">New details; null clears them.</param>
/// <param name="Status">`todo`, `in_progress`, `done` or `cancelled`; a finished one needs every subtask finished.</param>
/// <param name="Priority">1 (most urgent) to 5.</param>
/// <param name="DueDate">A new due date; null clears it.</param>
/// <param name="ProjectId">Another of your projects; null takes the todo out of its project.</param>
public sealed record UpdateTodoRequest(
    Optional<string> Title,
    Optional<string> Description,
    Optional<string> Status,
    Optional<short?> Priority,
    Optional<DateTimeOffset?> DueDate,
    Optional<Guid?> ProjectId);

/// <summary>Moves a todo under another parent, or to the top level with parentId null.</summary>
/// <param name="ParentId">The new parent (one of your active todos), or null for the top level.</param>
public sealed record MoveTodoRequest(Guid? ParentId);

/// <summary>A project: a named group of todos.</summary>
/// <param name="Id">The project's id.</param>
/// <param name="Name">Its name, unique among your projects.</param>
/// <param name="CreatedAt">When it was created.</param>
/// <param name="UpdatedAt">When it last changed; its `ETag` is made from this.</param>
public sealed record ProjectDto(Guid Id, string Name, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt)
{
    public static ProjectDto From(Project project) => new(project.Id, project.Name, project.CreatedAt, project.UpdatedAt);
}

/// <summary>A project's name.</summary>
/// <param name="Name">1 to 200 characters (trimmed), unique among your projects.</param>
public sealed record ProjectRequest(string? Name);

/// <summary>What a model was asked about a todo and what it answered.</summary>
/// <param name="Id">The interaction's id.</param>
/// <param name="TodoId">The todo it is about.</param>
/// <param name="Kind">What was asked, in lower snake case (`generate_subtasks`, `summarize`).</param>
/// <param name="Model">The model that answered.</param>
/// <param name="Prompt">What it was asked.</param>
/// <param name="Response">What it answered; null when nothing came back.</param>
/// <param name="TokensIn">Prompt tokens.</param>
/// <param name="TokensOut">Response tokens.</param>
/// <param name="LatencyMs">How long the model took, in milliseconds.</param>
/// <param name="CreatedAt">When it was recorded.</param>
/// <param name="ArchivedAt">When it was archived with its todo; null while the todo is active.</param>
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

/// <summary>An AI interaction to record: kind, model and prompt are required.</summary>
/// <param name="Kind">What was asked, in lower snake case starting with a letter (`generate_subtasks`, `summarize`); up to 50 characters.</param>
/// <param name="Model">The model asked; up to 100 characters.</param>
/// <param name="Prompt">What it was asked; up to 200,000 characters.</param>
/// <param name="Response">What it answered; up to 200,000 characters.</param>
/// <param name="TokensIn">Prompt tokens, 0 or more; default 0.</param>
/// <param name="TokensOut">Response tokens, 0 or more; default 0.</param>
/// <param name="LatencyMs">How long the model took in milliseconds, 0 or more; default 0.</param>
public sealed record RecordAiInteractionRequest(
    string? Kind,
    string? Model,
    string? Prompt,
    string? Response = null,
    int? TokensIn = null,
    int? TokensOut = null,
    int? LatencyMs = null);

/// <summary>Subtasks a model proposed for a todo, accepted together: all are created or none.</summary>
/// <param name="InteractionId">The recorded interaction that proposed them (one of this todo's); optional.</param>
/// <param name="Subtasks">1 to 100 subtasks, created in this order.</param>
public sealed record AcceptAiSubtasksRequest(IReadOnlyList<AiSubtask>? Subtasks, Guid? InteractionId = null);

/// <summary>One proposed subtask: only the title is required.</summary>
/// <param name="Title">What to do: 1 to 500 characters.</param>
/// <param name="Description">Details, up to 20,000 characters.</param>
/// <param name="Priority">1 (most urgent) to 5; default 3.</param>
/// <param name="DueDate">When it is due (ISO 8601).</param>
public sealed record AiSubtask(string? Title, string? Description = null, short? Priority = null, DateTimeOffset? DueDate = null);
