using System.ComponentModel;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;
using TodoScale.Api.Contracts;
using TodoScale.Api.Errors;
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
        api.MapGet("/", ListTodos).WithName(nameof(ListTodos));
        api.MapPost("/", CreateTodo).WithName(nameof(CreateTodo));
        api.MapGet("/{id}", GetTodo).WithName(nameof(GetTodo));
        api.MapPatch("/{id}", UpdateTodo).WithName(nameof(UpdateTodo));
        api.MapDelete("/{id}", DeleteTodo).WithName(nameof(DeleteTodo));
        api.MapPost("/{id}/complete", CompleteTodo).WithName(nameof(CompleteTodo));
        api.MapPost("/{id}/reopen", ReopenTodo).WithName(nameof(ReopenTodo));
        return app;
    }

    /// <summary>List your todos: filter, sort, page with a cursor</summary>
    /// <remarks>
    /// Your todos at every depth (subtasks too), one page at a time. Paging is by keyset: pass the previous page's
    /// `nextCursor` as `cursor` (with the same filters and sort) and no page ever skips or repeats a todo, however
    /// many are created meanwhile; `nextCursor` is null on the last page. A cursor belongs to the sort it was made
    /// for. With `include_archived=true` the todos the archiver has moved out (trees finished longer ago than
    /// `Archive:OlderThan`, 30 days by default) are merged into the same order and carry `archivedAt`.
    ///
    /// Read-your-writes: a list never misses a write you made, whichever copy serves it. The
    /// `X-TodoScale-Read` response header says which did: `cache`, `replica` or `primary`.
    /// </remarks>
    /// <param name="status">Only these statuses: `todo`, `in_progress`, `done`, `cancelled`; several comma-separated (`todo,in_progress`).</param>
    /// <param name="project">Only the todos of this project (its id).</param>
    /// <param name="priority">Only this priority, 1 (most urgent) to 5.</param>
    /// <param name="sort">`created` (newest first, the default), `due` (soonest first, no due date last) or `priority` (1 first); ties oldest first.</param>
    /// <param name="limit">Todos per page, 1 to 200 (default 50).</param>
    /// <param name="cursor">The `nextCursor` of the previous page, as it came; leave it out for the first page.</param>
    /// <response code="200">A page of todos and the cursor of the next one (null on the last).</response>
    /// <response code="400">A filter, sort, limit or cursor is not valid; `errors` names each parameter.</response>
    public static async Task<Results<Ok<Page<TodoDto>>, ValidationProblem>> ListTodos(
        [AsParameters] UserHandlerContext context,
        string? status, Guid? project, short? priority,
        // Renamed query parameters take [Description]: the XML comments' <param> is matched by the C# name.
        [FromQuery(Name = "due_before"), Description("Only todos due before this instant (ISO 8601, e.g. 2027-01-31T00:00:00Z).")] DateTimeOffset? dueBefore,
        [FromQuery(Name = "due_after"), Description("Only todos due at or after this instant (ISO 8601).")] DateTimeOffset? dueAfter,
        string? sort,
        [FromQuery(Name = "include_archived"), Description("true merges the archived todos into the list (they carry archivedAt); default false.")] bool? includeArchived,
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

    /// <summary>Get one todo</summary>
    /// <remarks>
    /// One of your todos, active or archived (an archived one carries `archivedAt`). The `ETag` header is its
    /// version: send it back as `If-Match` on a write to make the write fail (412) if someone changed the todo since.
    /// Read-your-writes: the answer never predates a write you made; `X-TodoScale-Read` says which copy served it.
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <response code="200">The todo; `ETag` is its version.</response>
    /// <response code="404">You have no todo with this id (another user's is not found either).</response>
    public static async Task<Results<Ok<TodoDto>, NotFoundProblem>> GetTodo(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
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
            return TodoNotFound(id);
        }

        ETags.Set(context.Http.Response, todo.UpdatedAt);
        return TypedResults.Ok(todo);
    }

    /// <summary>Create a todo</summary>
    /// <remarks>
    /// Creates a todo, at the top level or (with `parentId`) as a subtask of one of your active todos, one level
    /// below it: subtasks nest at most `Schema:MaxDepth` levels (default 5) below a top-level todo. Only `title` is
    /// required; `priority` defaults to 3, `status` to `todo` (a finished status sets `completedAt`).
    /// </remarks>
    /// <param name="body">The todo: `title` required, every other field optional.</param>
    /// <response code="201">The new todo; `Location` is its URL and `ETag` its version.</response>
    /// <response code="400">A field is missing, too long or out of range, or not part of the request; `errors` names each.</response>
    /// <response code="404">The `parentId` or `projectId` is not one of your active todos or projects.</response>
    /// <response code="409">The parent is already at the depth limit.</response>
    public static Task<Results<Created<TodoDto>, ValidationProblem, NotFoundProblem, ConflictProblem>> CreateTodo(
        CreateTodoRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken) =>
        CreateAsync(body, body.ParentId, "parentId", context, cancellationToken);

    /// <summary>Creates a todo, or a subtask when <paramref name="parentId"/> is set (<paramref name="parentField"/> names it in a problem).</summary>
    internal static async Task<Results<Created<TodoDto>, ValidationProblem, NotFoundProblem, ConflictProblem>> CreateAsync(
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
        if (parentId is { } parent)
        {
            if (await SubtasksApi.ParentDepthAsync(write.Db, userId, parent, cancellationToken) is not { } parentDepth)
            {
                return SubtasksApi.ParentNotFound(parent, parentField);
            }

            if (SubtasksApi.TooDeep(context, parentDepth, subtreeHeight: 0) is { } tooDeep)
            {
                return tooDeep;
            }
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

    /// <summary>Update a todo (only the fields sent)</summary>
    /// <remarks>
    /// A partial update: only the fields present in the body change; `null` clears `description`, `dueDate` and
    /// `projectId`. Setting a finished status (`done`, `cancelled`) sets `completedAt` and needs every subtask
    /// finished first (else 409: use complete with `cascade=true`); setting `todo` or `in_progress` clears it. To
    /// move a todo under another parent use move. Send the `ETag` you read as `If-Match` to update only if nobody
    /// changed the todo since.
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <param name="body">The fields to change; leave out the ones to keep.</param>
    /// <response code="200">The updated todo; `ETag` is its new version.</response>
    /// <response code="400">A field is empty, too long or out of range, or not part of the request; `errors` names each.</response>
    /// <response code="404">You have no todo with this id, or no project with the `projectId` sent.</response>
    /// <response code="409">A finished status was sent while the todo has open subtasks.</response>
    /// <response code="412">`If-Match` names an older version: the todo changed since you read it.</response>
    public static async Task<Results<Ok<TodoDto>, ValidationProblem, NotFoundProblem, ConflictProblem, PreconditionFailedProblem>> UpdateTodo(
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
            return locked.PreconditionFailed is { } stale ? stale : TodoNotFound(id);
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

    /// <summary>Delete a todo with its whole subtree</summary>
    /// <remarks>
    /// Deletes the todo, every subtask below it at any depth, and the AI interactions of all of them, in one
    /// transaction. There is no undo. `If-Match` makes the delete conditional on the version you read.
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <response code="204">Deleted, with its subtree.</response>
    /// <response code="404">You have no active todo with this id.</response>
    /// <response code="412">`If-Match` names an older version: the todo changed since you read it.</response>
    public static async Task<Results<NoContent, NotFoundProblem, PreconditionFailedProblem>> DeleteTodo(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "delete_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is null)
        {
            return locked.PreconditionFailed is { } stale ? stale : TodoNotFound(id);
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

    /// <summary>Complete a todo (and, with cascade, its whole subtree)</summary>
    /// <remarks>
    /// Marks the todo `done` and sets `completedAt`. A todo with open subtasks is refused with 409 unless
    /// `cascade=true`, which completes every open subtask below it in the same transaction and says how many.
    /// Completing a todo that is already done changes nothing. The archiver moves a tree to the archive once all of
    /// it was finished longer ago than `Archive:OlderThan` (30 days by default); it stays readable (get, and list
    /// with `include_archived=true`).
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <param name="cascade">true completes the open subtasks too; default false (409 when there are any).</param>
    /// <response code="200">The completed todo and how many subtasks were completed with it.</response>
    /// <response code="404">You have no active todo with this id.</response>
    /// <response code="409">The todo has open subtasks and `cascade` is not true.</response>
    /// <response code="412">`If-Match` names an older version: the todo changed since you read it.</response>
    public static async Task<Results<Ok<CompleteTodoResponse>, NotFoundProblem, ConflictProblem, PreconditionFailedProblem>> CompleteTodo(
        Guid id, [AsParameters] UserHandlerContext context, bool? cascade, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "complete_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TodoNotFound(id);
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

    /// <summary>Reopen a finished todo</summary>
    /// <remarks>
    /// Sets a `done` or `cancelled` todo back to `todo` and clears `completedAt`; its subtasks are left as they
    /// are. Reopening an open todo changes nothing.
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <response code="200">The reopened todo.</response>
    /// <response code="404">You have no active todo with this id (an archived one cannot be reopened).</response>
    /// <response code="412">`If-Match` names an older version: the todo changed since you read it.</response>
    public static async Task<Results<Ok<TodoDto>, NotFoundProblem, PreconditionFailedProblem>> ReopenTodo(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "reopen_todo", cancellationToken);
        var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } todo)
        {
            return locked.PreconditionFailed is { } stale ? stale : TodoNotFound(id);
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

    internal static NotFoundProblem TodoNotFound(Guid id) => new($"You have no todo {id}.");

    internal static NotFoundProblem ProjectNotFound(Guid projectId) => new($"The project {projectId} (projectId) was not found.");

    private static ConflictProblem OpenSubtasksConflict(int open) =>
        new($"The todo has {open} open subtask(s); finish them first, or complete with ?cascade=true to finish the whole subtree.");
}

/// <summary>A completed todo and how many of its open subtasks were completed with it (cascade=true).</summary>
/// <param name="Todo">The completed todo.</param>
/// <param name="SubtasksCompleted">How many open subtasks below it were completed with it (only with `cascade=true`).</param>
public sealed record CompleteTodoResponse(TodoDto Todo, int SubtasksCompleted);
