using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Contracts;
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
        api.MapPost("/subtasks", CreateSubtask).WithName("CreateSubtask");
        api.MapGet("/subtree", GetSubtree).WithName("GetSubtree");
        api.MapPost("/move", MoveTodo).WithName("MoveTodo");
        return app;
    }

    public static Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateSubtask(
        Guid id, CreateTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        if (body.ParentId is { } parent && parent != id)
        {
            return Task.FromResult<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>>(TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { ["parentId"] = ["A subtask's parent is the todo in the path; leave parentId out."] }));
        }

        return TodosApi.CreateAsync(body, id, "id", context, cancellationToken);
    }

    public static async Task<Results<Ok<TodoTreeDto>, NotFound>> GetSubtree(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
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
            return TypedResults.NotFound();
        }

        ETags.Set(context.Http.Response, tree.Todo.UpdatedAt);
        return TypedResults.Ok(tree);
    }

    public static async Task<Results<Ok<TodoDto>, NotFound, ProblemHttpResult>> MoveTodo(
        Guid id, MoveTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "move_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
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
                return TypedResults.Problem(
                    statusCode: StatusCodes.Status409Conflict, title: "Conflict",
                    detail: $"Todo {id} cannot move under {(parent == id ? "itself" : $"its own subtask {parent}")}: that would make a cycle.");
            }

            var height = subtree.Count == 0 ? 0 : subtree.Max(t => t.Depth) - todo.Depth;
            if (await CheckParentAsync(write.Db, userId, parent, "parentId", height, context, cancellationToken) is { } parentProblem)
            {
                return parentProblem;
            }
        }

        todo.ParentTodoId = body.ParentId;
        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    /// <summary>The parent exists for this user, is active, and has room for <paramref name="subtreeHeight"/> + 1 more levels.</summary>
    internal static async Task<ProblemHttpResult?> CheckParentAsync(
        TodoDbContext db, Guid userId, Guid parentId, string field, int subtreeHeight, UserHandlerContext context, CancellationToken cancellationToken)
    {
        var parentDepth = await db.Todos.Where(t => t.UserId == userId && t.Id == parentId)
            .Select(t => (short?)t.Depth).FirstOrDefaultAsync(cancellationToken);
        if (parentDepth is null)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status404NotFound, title: "Not Found",
                detail: $"The parent todo {parentId} ({field}) was not found among your active todos.");
        }

        if (context.Database.Schema.MaxDepth is { } maxDepth && parentDepth + 1 + subtreeHeight > maxDepth)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status409Conflict, title: "Conflict",
                detail: $"Subtasks nest at most {maxDepth} levels below a top-level todo; this would reach level {parentDepth + 1 + subtreeHeight}.");
        }

        return null;
    }
}
