using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Errors;
using TodoScale.Api.Writes;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Apis;

/// <summary>
/// What a write got from <see cref="RowLocks"/>: the row, locked; or the 412 that stops the write; or neither, when
/// the caller has no such row (404).
/// </summary>
public readonly record struct Locked<T>(T? Row, PreconditionFailedProblem? PreconditionFailed)
    where T : class;

/// <summary>
/// The prelude of every write to an existing todo or project: lock the row for the rest of the transaction
/// (FOR UPDATE); none for this caller (someone else's included: the query names the caller, and row-level security
/// again) is a 404; an If-Match naming an older version is a 412. A handler goes on with the row or stops:
/// <code>
/// var locked = await write.LockTodoAsync(id, context.Http.Request, cancellationToken);
/// if (locked.Row is not { } todo)
/// {
///     return locked.PreconditionFailed is { } stale ? stale : TodoNotFound(id);
/// }
/// </code>
/// </summary>
public static class RowLocks
{
    public static Task<Locked<Todo>> LockTodoAsync(this UserWrite write, Guid id, HttpRequest request, CancellationToken cancellationToken) =>
        LockForWriteAsync(
            write.Db.Todos.FromSql($"SELECT * FROM todos_active WHERE user_id = {write.UserId} AND id = {id} FOR UPDATE"),
            todo => todo.UpdatedAt, request, "todo", cancellationToken);

    public static Task<Locked<Project>> LockProjectAsync(this UserWrite write, Guid id, HttpRequest request, CancellationToken cancellationToken) =>
        LockForWriteAsync(
            write.Db.Projects.FromSql($"SELECT * FROM projects WHERE user_id = {write.UserId} AND id = {id} FOR UPDATE"),
            project => project.UpdatedAt, request, "project", cancellationToken);

    private static async Task<Locked<T>> LockForWriteAsync<T>(
        IQueryable<T> locking, Func<T, DateTimeOffset> version, HttpRequest request, string what, CancellationToken cancellationToken)
        where T : class
    {
        var row = (await locking.AsTracking().ToListAsync(cancellationToken)).SingleOrDefault();
        if (row is null)
        {
            return default;
        }

        return ETags.Matches(request, version(row)) ? new(row, null) : new(null, ETags.PreconditionFailed(what));
    }
}
