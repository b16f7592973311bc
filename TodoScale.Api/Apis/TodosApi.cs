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
/// Todos and their subtasks: create, read, list (filters, sorts, keyset pages, archived merged in), partial update,
/// complete (with the whole subtree on request) and reopen, move under another parent, delete with the subtree.
/// Someone else's todo is a 404 here (the query names the caller) and again in the database (row-level security).
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
        api.MapPost("/{id}/subtasks", CreateSubtask).WithName("CreateSubtask").WithTags("Subtasks");
        api.MapGet("/{id}/subtree", GetSubtree).WithName("GetSubtree").WithTags("Subtasks");
        api.MapPost("/{id}/move", MoveTodo).WithName("MoveTodo").WithTags("Subtasks");
        return app;
    }

    public static async Task<Results<Ok<Page<TodoDto>>, ValidationProblem>> ListTodos(
        [AsParameters] TodoServices s,
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

        var userId = s.UserId;
        var spec = new ReadSpec("list_todos", query.IncludeArchived ? "todos_archived" : "todos_active", query.FirstPageKey());
        var page = await s.Reads.ReadAsync(userId, spec, (connection, transaction, ct) => query.ExecuteAsync(connection, transaction, userId, ct), cancellationToken);
        return TypedResults.Ok(s.Served(page));
    }

    public static async Task<Results<Ok<TodoDto>, NotFound>> GetTodo(Guid id, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        var todo = s.Served(await s.Reads.ReadAsync(userId, new ReadSpec("get_todo", "todos_active"), async (db, ct) =>
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

        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(todo);
    }

    public static Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateTodo(
        CreateTodoRequest body, [AsParameters] TodoServices s, CancellationToken cancellationToken) =>
        CreateAsync(body, body.ParentId, "parentId", s, cancellationToken);

    public static Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateSubtask(
        Guid id, CreateTodoRequest body, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        if (body.ParentId is { } parent && parent != id)
        {
            return Task.FromResult<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>>(TypedResults.ValidationProblem(
                new Dictionary<string, string[]> { ["parentId"] = ["A subtask's parent is the todo in the path; leave parentId out."] }));
        }

        return CreateAsync(body, id, "id", s, cancellationToken);
    }

    private static async Task<Results<Created<TodoDto>, ValidationProblem, ProblemHttpResult>> CreateAsync(
        CreateTodoRequest body, Guid? parentId, string parentField, TodoServices s, CancellationToken cancellationToken)
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

        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, parentId is null ? "create_todo" : "create_subtask", cancellationToken);
        if (parentId is { } parent && await CheckParentAsync(write.Db, userId, parent, parentField, subtreeHeight: 0, s, cancellationToken) is { } parentProblem)
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
            CompletedAt = status.IsFinished() ? s.Clock.GetUtcNow() : null,
        };
        write.Db.Todos.Add(todo);
        await write.CommitAsync(cancellationToken);

        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Created($"/api/todos/{todo.Id}", TodoDto.From(todo));
    }

    public static async Task<Results<Ok<TodoDto>, ValidationProblem, NotFound, ProblemHttpResult>> UpdateTodo(
        Guid id, UpdateTodoRequest body, [AsParameters] TodoServices s, CancellationToken cancellationToken)
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

        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, "update_todo", cancellationToken);
        var todo = await TodoServices.LockTodoAsync(write.Db, userId, id, cancellationToken);
        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        if (!ETags.Matches(s.Http.Request, todo.UpdatedAt))
        {
            return ETags.PreconditionFailed("todo");
        }

        if (body.ProjectId is { IsSet: true, Value: { } project } && project != todo.ProjectId
            && !await ProjectExistsAsync(write.Db, userId, project, cancellationToken))
        {
            return ProjectNotFound(project);
        }

        if (status is { } next && next != todo.Status)
        {
            if (next.IsFinished() && !todo.Status.IsFinished() && await OpenSubtasksAsync(write.Db, userId, id, cancellationToken) is > 0 and var open)
            {
                return OpenSubtasksConflict(open);
            }

            todo.CompletedAt = next.IsFinished() ? (todo.Status.IsFinished() ? todo.CompletedAt : s.Clock.GetUtcNow()) : null;
            todo.Status = next;
        }

        todo.Title = body.Title.Or(todo.Title)!;
        todo.Description = body.Description.Or(todo.Description);
        todo.Priority = body.Priority.IsSet ? body.Priority.Value!.Value : todo.Priority;
        todo.DueDate = body.DueDate.IsSet ? body.DueDate.Value?.ToUniversalTime() : todo.DueDate;
        todo.ProjectId = body.ProjectId.Or(todo.ProjectId);
        await write.CommitAsync(cancellationToken);

        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    public static async Task<Results<NoContent, NotFound, ProblemHttpResult>> DeleteTodo(
        Guid id, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, "delete_todo", cancellationToken);
        var todo = await TodoServices.LockTodoAsync(write.Db, userId, id, cancellationToken);
        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        if (!ETags.Matches(s.Http.Request, todo.UpdatedAt))
        {
            return ETags.PreconditionFailed("todo");
        }

        // The subtree goes with its root (ON DELETE CASCADE), and so do the AI interactions of every todo in it.
        var ids = (await TodoServices.SubtreeAsync(write.Db, userId, id, cancellationToken)).Select(t => t.Id).Append(id).ToArray();
        await write.Db.Database.ExecuteSqlAsync(
            $"DELETE FROM ai_interactions WHERE user_id = {userId} AND todo_id = ANY({ids})", cancellationToken);
        await write.Db.Database.ExecuteSqlAsync(
            $"DELETE FROM todos_active WHERE user_id = {userId} AND id = {id}", cancellationToken);
        write.Db.ChangeTracker.Clear();
        await write.CommitAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    public static async Task<Results<Ok<CompleteTodoResponse>, NotFound, ProblemHttpResult>> CompleteTodo(
        Guid id, [AsParameters] TodoServices s, bool? cascade, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, "complete_todo", cancellationToken);
        var todo = await TodoServices.LockTodoAsync(write.Db, userId, id, cancellationToken);
        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        if (!ETags.Matches(s.Http.Request, todo.UpdatedAt))
        {
            return ETags.PreconditionFailed("todo");
        }

        var now = s.Clock.GetUtcNow();
        var completedBelow = 0;
        if (await OpenSubtasksAsync(write.Db, userId, id, cancellationToken) is > 0 and var open)
        {
            if (cascade is not true)
            {
                return OpenSubtasksConflict(open);
            }

            completedBelow = await write.Db.Database.ExecuteSqlAsync(
                $"""
                WITH RECURSIVE subtree AS (
                    SELECT t.id FROM todos_active t WHERE t.user_id = {userId} AND t.parent_todo_id = {id}
                    UNION ALL
                    SELECT t.id FROM todos_active t JOIN subtree s ON t.user_id = {userId} AND t.parent_todo_id = s.id)
                UPDATE todos_active SET status = 'done', completed_at = {now}
                 WHERE user_id = {userId} AND id IN (SELECT id FROM subtree) AND status IN ('todo', 'in_progress')
                """, cancellationToken);
        }

        if (todo.Status != TodoStatus.Done)
        {
            todo.Status = TodoStatus.Done;
            todo.CompletedAt = now;
        }

        await write.CommitAsync(cancellationToken);
        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(new CompleteTodoResponse(TodoDto.From(todo), completedBelow));
    }

    public static async Task<Results<Ok<TodoDto>, NotFound, ProblemHttpResult>> ReopenTodo(
        Guid id, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, "reopen_todo", cancellationToken);
        var todo = await TodoServices.LockTodoAsync(write.Db, userId, id, cancellationToken);
        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        if (!ETags.Matches(s.Http.Request, todo.UpdatedAt))
        {
            return ETags.PreconditionFailed("todo");
        }

        if (todo.Status.IsFinished())
        {
            todo.Status = TodoStatus.Todo;
            todo.CompletedAt = null;
        }

        await write.CommitAsync(cancellationToken);
        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    public static async Task<Results<Ok<TodoTreeDto>, NotFound>> GetSubtree(Guid id, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        var tree = s.Served(await s.Reads.ReadAsync(userId, new ReadSpec("get_subtree", "todos_active"), async (db, ct) =>
        {
            var root = await db.Todos.AsNoTracking().FirstOrDefaultAsync(t => t.UserId == userId && t.Id == id, ct);
            if (root is null)
            {
                return null;
            }

            var children = (await TodoServices.SubtreeAsync(db, userId, id, ct)).ToLookup(t => t.ParentTodoId);
            TodoTreeDto Build(Todo todo) => new(TodoDto.From(todo), children[todo.Id].Select(Build).ToList());
            return Build(root);
        }, cancellationToken));

        if (tree is null)
        {
            return TypedResults.NotFound();
        }

        ETags.Set(s.Http.Response, tree.Todo.UpdatedAt);
        return TypedResults.Ok(tree);
    }

    public static async Task<Results<Ok<TodoDto>, NotFound, ProblemHttpResult>> MoveTodo(
        Guid id, MoveTodoRequest body, [AsParameters] TodoServices s, CancellationToken cancellationToken)
    {
        var userId = s.UserId;
        await using var write = await s.Writes.BeginAsync(userId, "move_todo", cancellationToken);
        var todo = await TodoServices.LockTodoAsync(write.Db, userId, id, cancellationToken);
        if (todo is null)
        {
            return TypedResults.NotFound();
        }

        if (!ETags.Matches(s.Http.Request, todo.UpdatedAt))
        {
            return ETags.PreconditionFailed("todo");
        }

        if (body.ParentId == todo.ParentTodoId)
        {
            ETags.Set(s.Http.Response, todo.UpdatedAt);
            return TypedResults.Ok(TodoDto.From(todo));
        }

        if (body.ParentId is { } parent)
        {
            var subtree = await TodoServices.SubtreeAsync(write.Db, userId, id, cancellationToken);
            if (parent == id || subtree.Any(t => t.Id == parent))
            {
                return TypedResults.Problem(
                    statusCode: StatusCodes.Status409Conflict, title: "Conflict",
                    detail: $"Todo {id} cannot move under {(parent == id ? "itself" : $"its own subtask {parent}")}: that would make a cycle.");
            }

            var height = subtree.Count == 0 ? 0 : subtree.Max(t => t.Depth) - todo.Depth;
            if (await CheckParentAsync(write.Db, userId, parent, "parentId", height, s, cancellationToken) is { } parentProblem)
            {
                return parentProblem;
            }
        }

        todo.ParentTodoId = body.ParentId;
        await write.CommitAsync(cancellationToken);
        ETags.Set(s.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(TodoDto.From(todo));
    }

    /// <summary>The parent exists for this user, is active, and has room for <paramref name="subtreeHeight"/> + 1 more levels.</summary>
    internal static async Task<ProblemHttpResult?> CheckParentAsync(
        TodoDbContext db, Guid userId, Guid parentId, string field, int subtreeHeight, TodoServices s, CancellationToken cancellationToken)
    {
        var parentDepth = await db.Todos.Where(t => t.UserId == userId && t.Id == parentId)
            .Select(t => (short?)t.Depth).FirstOrDefaultAsync(cancellationToken);
        if (parentDepth is null)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status404NotFound, title: "Not Found",
                detail: $"The parent todo {parentId} ({field}) was not found among your active todos.");
        }

        if (s.Database.Schema.MaxDepth is { } maxDepth && parentDepth + 1 + subtreeHeight > maxDepth)
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status409Conflict, title: "Conflict",
                detail: $"Subtasks nest at most {maxDepth} levels below a top-level todo; this would reach level {parentDepth + 1 + subtreeHeight}.");
        }

        return null;
    }

    internal static Task<bool> ProjectExistsAsync(TodoDbContext db, Guid userId, Guid projectId, CancellationToken cancellationToken) =>
        db.Projects.AnyAsync(p => p.UserId == userId && p.Id == projectId, cancellationToken);

    internal static ProblemHttpResult ProjectNotFound(Guid projectId) =>
        TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Not Found", detail: $"The project {projectId} (projectId) was not found.");

    private static ProblemHttpResult OpenSubtasksConflict(int open) =>
        TypedResults.Problem(
            statusCode: StatusCodes.Status409Conflict, title: "Conflict",
            detail: $"The todo has {open} open subtask(s); finish them first, or complete with ?cascade=true to finish the whole subtree.");

    private static async Task<int> OpenSubtasksAsync(TodoDbContext db, Guid userId, Guid id, CancellationToken cancellationToken) =>
        (await db.Database.SqlQuery<int>(
            $"""
            WITH RECURSIVE subtree AS (
                SELECT t.id, t.status FROM todos_active t WHERE t.user_id = {userId} AND t.parent_todo_id = {id}
                UNION ALL
                SELECT t.id, t.status FROM todos_active t JOIN subtree s ON t.user_id = {userId} AND t.parent_todo_id = s.id)
            SELECT count(*)::int AS "Value" FROM subtree WHERE status IN ('todo', 'in_progress')
            """).ToListAsync(cancellationToken)).Single();
}

/// <summary>A completed todo and how many of its open subtasks were completed with it (cascade=true).</summary>
public sealed record CompleteTodoResponse(TodoDto Todo, int SubtasksCompleted);
