using System.Security.Claims;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Reads;
using TodoScale.Api.Writes;
using TodoScale.Data;
using TodoScale.Data.Entities;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Api.Apis;

/// <summary>What the todo, project and AI endpoints need, bound with [AsParameters].</summary>
public sealed record TodoServices(
    TenantWrites Writes,
    ReadRouter Reads,
    DatabaseMonitor Database,
    TimeProvider Clock,
    HttpContext Http,
    ClaimsPrincipal User)
{
    public const string ReadSourceHeader = "X-TodoScale-Read";

    /// <summary>The caller (the policy on every group guarantees a uuid sub).</summary>
    public Guid UserId => User.UserId()!.Value;

    public T Served<T>(Routed<T> routed)
    {
        Http.Response.Headers[ReadSourceHeader] = routed.Source;
        return routed.Value;
    }

    /// <summary>The todo, locked for the rest of the transaction (FOR UPDATE), or null when the user has none with that id.</summary>
    public static async Task<Todo?> LockTodoAsync(TodoDbContext db, Guid userId, Guid id, CancellationToken cancellationToken) =>
        (await db.Todos.FromSql($"SELECT * FROM todos_active WHERE user_id = {userId} AND id = {id} FOR UPDATE")
            .AsTracking().ToListAsync(cancellationToken)).SingleOrDefault();

    /// <summary>Every subtask below <paramref name="id"/> (not the todo itself), parents before children.</summary>
    public static Task<List<Todo>> SubtreeAsync(TodoScaleDbContext db, Guid userId, Guid id, CancellationToken cancellationToken) =>
        db.Todos.FromSql(
            $"""
            WITH RECURSIVE subtree AS (
                SELECT t.* FROM todos_active t WHERE t.user_id = {userId} AND t.parent_todo_id = {id}
                UNION ALL
                SELECT t.* FROM todos_active t JOIN subtree s ON t.user_id = {userId} AND t.parent_todo_id = s.id)
            SELECT * FROM subtree ORDER BY depth, created_at, id
            """).AsNoTracking().ToListAsync(cancellationToken);
}
