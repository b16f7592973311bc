using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Contracts;
using TodoScale.Api.Errors;
using TodoScale.Api.Extensions;
using TodoScale.Api.Queries;
using TodoScale.Api.Reads;
using TodoScale.Data;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Apis;

/// <summary>
/// Subtasks: create one under a todo, read a todo with its whole subtree, move a todo (with its subtree) under
/// another parent or to the top level. A parent must be the caller's, active, with room below it for the depth
/// limit; a move never makes a cycle. AI-proposed subtasks are accepted in <see cref="AiApi"/>.
/// </summary>
public static class SubtasksApi
{
    public static IEndpointRouteBuilder MapSubtasksApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/todos/{id}").WithTags("Subtasks").RequireAuthorization(Policies.User);
        api.MapPost("/subtasks", CreateSubtask).WithName(nameof(CreateSubtask));
        api.MapGet("/subtree", GetSubtree).WithName(nameof(GetSubtree));
        api.MapPost("/move", MoveTodo).WithName(nameof(MoveTodo));
        return app;
    }

    /// <summary>Create a subtask under a todo</summary>
    /// <remarks>
    /// Creates a todo one level below the todo in the path (its `depth` is the parent's + 1). The parent must be one
    /// of your active todos, and subtasks nest at most `Schema:MaxDepth` levels (default 5) below a top-level todo.
    /// The body is the same as for creating a todo; leave `parentId` out (the path names the parent).
    /// </remarks>
    /// <param name="id">The parent todo's id.</param>
    /// <param name="body">The subtask: `title` required, every other field optional; no `parentId`.</param>
    /// <response code="201">The new subtask; `Location` is its URL and `ETag` its version.</response>
    /// <response code="400">A field is missing, too long or out of range, or `parentId` names another todo than the path; `errors` names each.</response>
    /// <response code="404">You have no active todo with this id to be the parent, or no project with the `projectId` sent.</response>
    /// <response code="409">The parent is already at the depth limit.</response>
    public static Task<Results<Created<TodoDto>, ValidationProblem, NotFoundProblem, ConflictProblem>> CreateSubtask(
        Guid id, CreateTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        if (body.ParentId is { } parent && parent != id)
        {
            return Task.FromResult<Results<Created<TodoDto>, ValidationProblem, NotFoundProblem, ConflictProblem>>(TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { ["parentId"] = ["A subtask's parent is the todo in the path; leave parentId out."] }));
        }

        return TodosApi.CreateAsync(body, id, "id", context, cancellationToken);
    }

    /// <summary>Get a todo with all its subtasks, nested</summary>
    /// <remarks>
    /// The todo and every subtask below it at any depth, as a tree (`subtasks` of each node, oldest first). Only
    /// active todos: archived subtrees are read one todo at a time. Read-your-writes as for get; `ETag` is the
    /// root's version.
    /// </remarks>
    /// <param name="id">The root todo's id.</param>
    /// <response code="200">The todo and its subtasks, nested.</response>
    /// <response code="404">You have no active todo with this id.</response>
    public static async Task<Results<Ok<TodoTreeDto>, NotFoundProblem>> GetSubtree(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        var tree = context.Served(await context.Reads.ReadAsync(userId, new ReadSpec("get_subtree", "todos_active"), async (db, ct) =>
        {
            var root = await db.Todos.AsNoTracking().FirstOrDefaultAsync(t => t.UserId == userId && t.Id == id, ct);
            if (root is null)
            {
                return null;
            }

            var children = (await TodoSubtree.ListAsync(db, userId, id, ct)).ToLookup(t => t.ParentTodoId);
            TodoTreeDto Build(Todo todo) => new(TodoDto.From(todo), children[todo.Id].Select(Build).ToList());
            return Build(root);
        }, cancellationToken));

        if (tree is null)
        {
            return TodosApi.TodoNotFound(id);
        }

        ETags.Set(context.Http.Response, tree.Todo.UpdatedAt);
        return TypedResults.Ok(tree);
    }

    /// <summary>Move a todo, with its subtree, under another parent or to the top level</summary>
    /// <remarks>
    /// `{"parentId": "&lt;id&gt;"}` moves the todo under another of your active todos; `{"parentId": null}` makes it a
    /// top-level todo. Its whole subtree comes along and every depth below follows. Refused with 409 when the new
    /// parent is the todo itself or one of its own subtasks (a cycle), or when the deepest subtask would pass the
    /// depth limit. Moving to the parent it already has changes nothing.
    /// </remarks>
    /// <param name="id">The id of the todo to move.</param>
    /// <param name="body">The new parent, or null for the top level.</param>
    /// <response code="200">The moved todo, with its new `parentId` and `depth`.</response>
    /// <response code="404">You have no active todo with this id, or none with the `parentId` sent.</response>
    /// <response code="409">The move would make a cycle or pass the depth limit.</response>
    /// <response code="412">`If-Match` names an older version: the todo changed since you read it.</response>
    public static async Task<Results<Ok<TodoDto>, NotFoundProblem, ConflictProblem, PreconditionFailedProblem>> MoveTodo(
        Guid id, MoveTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "move_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TodosApi.TodoNotFound(id);
        }

        if (body.ParentId == todo.ParentTodoId)
        {
            ETags.Set(context.Http.Response, todo.UpdatedAt);
            return TypedResults.Ok(TodoDto.From(todo));
        }

        if (body.ParentId is { } parent)
        {
            var subtree = await TodoSubtree.ListAsync(write.Db, userId, id, cancellationToken);
            if (parent == id || subtree.Any(t => t.Id == parent))
            {
                return new ConflictProblem($"Todo {id} cannot move under {(parent == id ? "itself" : $"its own subtask {parent}")}: that would make a cycle.");
            }

            if (await ParentDepthAsync(write.Db, userId, parent, cancellationToken) is not { } parentDepth)
            {
                return ParentNotFound(parent, "parentId");
            }

            var height = subtree.Count == 0 ? 0 : subtree.Max(t => t.Depth) - todo.Depth;
            if (TooDeep(context, parentDepth, height) is { } tooDeep)
            {
                return tooDeep;
            }
        }

        todo.ParentTodoId = body.ParentId;
        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    /// <summary>The depth of the caller's active todo <paramref name="parentId"/>; null when they have none.</summary>
    internal static Task<short?> ParentDepthAsync(TodoDbContext db, Guid userId, Guid parentId, CancellationToken cancellationToken) =>
        db.Todos.Where(t => t.UserId == userId && t.Id == parentId).Select(t => (short?)t.Depth).FirstOrDefaultAsync(cancellationToken);

    /// <summary>The 404 for a parent the caller does not have (<paramref name="field"/> names where it was given).</summary>
    internal static NotFoundProblem ParentNotFound(Guid parentId, string field) =>
        new($"The parent todo {parentId} ({field}) was not found among your active todos.");

    /// <summary>The 409 when a subtree <paramref name="subtreeHeight"/> levels tall under a parent at <paramref name="parentDepth"/> passes the depth limit.</summary>
    internal static ConflictProblem? TooDeep(UserHandlerContext context, short parentDepth, int subtreeHeight) =>
        context.Database.Schema.MaxDepth is { } maxDepth && parentDepth + 1 + subtreeHeight > maxDepth
            ? new($"Subtasks nest at most {maxDepth} levels below a top-level todo; this would reach level {parentDepth + 1 + subtreeHeight}.")
            : null;
}
