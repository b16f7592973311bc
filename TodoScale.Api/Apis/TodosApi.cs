using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using TodoScale.Api.Contracts;
using TodoScale.Api.Extensions;
using TodoScale.Api.Queries;
using TodoScale.Api.Reads;
using TodoScale.Data;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Apis;

/// <summary>
/// Todos: create (under a parent too, with parentId), read, list (filters, sorts, keyset pages, archived merged in),
/// partial update, complete (with the whole subtree on request) and reopen, delete with the subtree. Subtasks and moves
/// are in <see cref="SubtasksApi"/>. Someone else's todo is a 404 here (the query names the caller) and again in the
/// database (row-level security).
/// </summary>
public static class TodosApi
{
    public static IEndpointRouteBuilder MapTodosApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/todos").WithTags("Todos").RequireAuthorization(Policies.User);
        api.MapGet("/", ListTodos).WithName("ListTodos");
        api.MapPost("/", CreateTodo).WithName("CreateTodo");
        api.MapGet("/{id}", GetTodo).WithName("GetTodo");
        api.MapPatch("/{id}", UpdateTodo).WithName("UpdateTodo");
        api.MapDelete("/{id}", DeleteTodo).WithName("DeleteTodo");
        api.MapPost("/{id}/complete", CompleteTodo).WithName("CompleteTodo");
        api.MapPost("/{id}/reopen", ReopenTodo).WithName("ReopenTodo");
        return app;
    }

    public static async Task<Results<Ok<Page<TodoDto>>, ValidationProblem>> ListTodos(
        [AsParameters] UserHandlerContext context,
        string? status, Guid? project, short? priority,
        [FromQuery(Name = "due_before")] DateTimeOffset? dueBefore,
        [FromQuery(Name = "due_after")] DateTimeOffset? dueAfter,
        string? sort,
        [FromQuery(Name = "include_archived")] bool? includeArchived,
        int? limit, string? cursor, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var query = TodoListQuery.Parse(status, project, priority, dueBefore, dueAfter, sort, includeArchived, limit, cursor, validation);
        if (query is null)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        var spec = new ReadSpec("list_todos", query.IncludeArchived ? "todos_archived" : "todos_active", query.FirstPageKey());
        var page = await context.Reads.ReadInBatchAsync(userId, spec, query.ExecuteAsync, cancellationToken);
        return TypedResults.Ok(context.Served(page));
    }

    public static async Task<Results<Ok<TodoDto>, NotFound>> GetTodo(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        var todo = context.Served(await context.Reads.ReadAsync(userId, new ReadSpec("get_todo", "todos_active"), async (db, ct) =>
        {
            var active = await db.Todos.AsNoTracking().FirstOrDefaultAsync(t => t.UserId == userId && t.Id == id, ct);
            if (active is not null)
            {
                return TodoDto.From(active);
            }

            var archived = await db.ArchivedTodos.AsNoTracking()
                .Where(t => t.UserId == userId && t.Id == id).OrderByDescending(t => t.ArchivedAt).FirstOrDefaultAsync(ct);
            return archived is null ? null : TodoDto.From(archived, archived.ArchivedAt);
        }, cancellationToken));

        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(todo);
    }

    public static Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateTodo(
        CreateTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken) =>
        CreateAsync(body, body.ParentId, "parentId", context, cancellationToken);

    /// <summary>Creates a todo, or a subtask when <paramref name="parentId"/> is set (<paramref name="parentField"/> names it in a problem).</summary>
    internal static async Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateAsync(
        CreateTodoRequest body, Guid? parentId, string parentField, UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        validation.Title("title", body.Title);
        validation.Description("description", body.Description);
        var status = validation.Status("status", body.Status) ?? TodoStatus.Todo;
        validation.Priority("priority", body.Priority);
        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, parentId is null ? "create_todo" : "create_subtask", cancellationToken);
        if (parentId is { } parent && await SubtasksApi.CheckParentAsync(write.Db, userId, parent, parentField, subtreeHeight: 0, context, cancellationToken) is { } parentProblem)
        {
            return parentProblem;
        }

        if (body.ProjectId is { } project && !await ProjectExistsAsync(write.Db, userId, project, cancellationToken))
        {
            return ProjectNotFound(project);
        }

        var todo = new Todo
        {
            Id = Guid.CreateVersion7(),
            UserId = userId,
            ParentTodoId = parentId,
            ProjectId = body.ProjectId,
            Title = body.Title!,
            Description = body.Description,
            Status = status,
            Priority = body.Priority ?? 3,
            DueDate = body.DueDate?.ToUniversalTime(),
            CompletedAt = status.IsFinished() ? context.Clock.GetUtcNow() : null,
        };
        write.Db.Todos.Add(todo);
        await write.CommitAsync(cancellationToken);

        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Created($"/api/todos/{todo.Id}", TodoDto.From(todo));
    }

    public static async Task<Results<Ok<TodoDto>, ValidationProblem, NotFound, ProblemHttpResult>> UpdateTodo(
        Guid id, UpdateTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        if (body.Title.IsSet)
        {
            validation.Title("title", body.Title.Value ?? "");
        }

        validation.Description("description", body.Description.Value);
        var status = body.Status.IsSet ? validation.Status("status", body.Status.Value ?? "") : null;
        if (body.Priority.IsSet)
        {
            validation.Priority("priority", body.Priority.Value ?? 0);
        }

        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "update_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        if (body.ProjectId is { IsSet: true, Value: { } project } && project != todo.ProjectId
            && !await ProjectExistsAsync(write.Db, userId, project, cancellationToken))
        {
            return ProjectNotFound(project);
        }

        if (status is { } next && next != todo.Status)
        {
            if (next.IsFinished() && !todo.Status.IsFinished() && await TodoSubtree.CountOpenAsync(write.Db, userId, id, cancellationToken) is > 0 and var open)
            {
                return OpenSubtasksConflict(open);
            }

            todo.CompletedAt = next.IsFinished() ? (todo.Status.IsFinished() ? todo.CompletedAt : context.Clock.GetUtcNow()) : null;
            todo.Status = next;
        }

        todo.Title = body.Title.Or(todo.Title)!;
        todo.Description = body.Description.Or(todo.Description);
        todo.Priority = body.Priority.IsSet ? body.Priority.Value!.Value : todo.Priority;
        todo.DueDate = body.DueDate.IsSet ? body.DueDate.Value?.ToUniversalTime() : todo.DueDate;
        todo.ProjectId = body.ProjectId.Or(todo.ProjectId);
        await write.CommitAsync(cancellationToken);

        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    public static async Task<Results<NoContent, NotFound, ProblemHttpResult>> DeleteTodo(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "delete_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is null)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        // The subtree goes with its root (ON DELETE CASCADE), and so do the AI interactions of every todo in it.
        var ids = (await TodoSubtree.ListAsync(write.Db, userId, id, cancellationToken)).Select(t => t.Id).Append(id).ToArray();
        await write.Db.Database.ExecuteSqlAsync(
            $"DELETE FROM ai_interactions WHERE user_id = {userId} AND todo_id = ANY({ids})", cancellationToken);
        await write.Db.Database.ExecuteSqlAsync(
            $"DELETE FROM todos_active WHERE user_id = {userId} AND id = {id}", cancellationToken);
        write.Db.ChangeTracker.Clear();
        await write.CommitAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    public static async Task<Results<Ok<CompleteTodoResponse>, NotFound, ProblemHttpResult>> CompleteTodo(
        Guid id, [AsParameters] UserHandlerContext context, bool? cascade, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "complete_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        var now = context.Clock.GetUtcNow();
        var completedBelow = 0;
        if (await TodoSubtree.CountOpenAsync(write.Db, userId, id, cancellationToken) is > 0 and var open)
        {
            if (cascade is not true)
            {
                return OpenSubtasksConflict(open);
            }

            completedBelow = await TodoSubtree.CompleteOpenAsync(write.Db, userId, id, now, cancellationToken);
        }

        if (todo.Status != TodoStatus.Done)
        {
            todo.Status = TodoStatus.Done;
            todo.CompletedAt = now;
        }

        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(new CompleteTodoResponse(TodoDto.From(todo), completedBelow));
    }

    public static async Task<Results<Ok<TodoDto>, NotFound, ProblemHttpResult>> ReopenTodo(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "reopen_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        if (todo.Status.IsFinished())
        {
            todo.Status = TodoStatus.Todo;
            todo.CompletedAt = null;
        }

        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    internal static Task<bool> ProjectExistsAsync(TodoDbContext db, Guid userId, Guid projectId, CancellationToken cancellationToken) =>
        db.Projects.AnyAsync(p => p.UserId == userId && p.Id == projectId, cancellationToken);

    internal static ProblemHttpResult ProjectNotFound(Guid projectId) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not Found", detail: $"The project {projectId} (projectId) was not found.");

    private static ProblemHttpResult OpenSubtasksConflict(int open) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status409Conflict, title: "Conflict",
            detail: $"The todo has {open} open subtask(s); finish them first, or complete with ?cascade=true to finish the whole subtree.");
}

/// <summary>A completed todo and how many of its open subtasks were completed with it (cascade=true).</summary>
public sealed record CompleteTodoResponse(TodoDto Todo, int SubtasksCompleted);
