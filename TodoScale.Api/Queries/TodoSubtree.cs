using Microsoft.EntityFrameworkCore;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Data;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Queries;

/// <summary>
/// A todo's subtree: every active subtask below it, at any depth (not the todo itself). One recursive CTE finds
/// it, naming the user on both sides so each step stays in the user's partition; the subtree is then listed,
/// counted (its open todos) or completed.
/// </summary>
public static class TodoSubtree
{
    /// <summary>
    /// The CTE <c>subtree</c>: the todos of <c>@user_id</c> below <c>@root_id</c>. It ends with a line break, so the
    /// statement that uses it follows on a line of its own.
    /// </summary>
    private const string Cte =
        """
        WITH RECURSIVE subtree AS (
            SELECT t.* FROM todos_active t WHERE t.user_id = @user_id AND t.parent_todo_id = @root_id
            UNION ALL
            SELECT t.* FROM todos_active t JOIN subtree s ON t.user_id = @user_id AND t.parent_todo_id = s.id)

        """;

    /// <summary>Every subtask below <paramref name="rootId"/>, parents before children.</summary>
    public static Task<List<Todo>> ListAsync(TodoScaleDbContext db, Guid userId, Guid rootId, CancellationToken cancellationToken) =>
        db.Todos.FromSqlRaw(
            Cte + "SELECT * FROM subtree ORDER BY depth, created_at, id",
            Parameters(userId, rootId)).AsNoTracking().ToListAsync(cancellationToken);

    /// <summary>How many subtasks below <paramref name="rootId"/> are still open (todo or in progress).</summary>
    public static async Task<int> CountOpenAsync(TodoDbContext db, Guid userId, Guid rootId, CancellationToken cancellationToken) =>
        (await db.Database.SqlQueryRaw<int>(
            Cte + """SELECT count(*)::int AS "Value" FROM subtree WHERE status IN ('todo', 'in_progress')""",
            Parameters(userId, rootId)).ToListAsync(cancellationToken)).Single();

    /// <summary>Marks every open subtask below <paramref name="rootId"/> done at <paramref name="now"/>; returns how many.</summary>
    public static Task<int> CompleteOpenAsync(TodoDbContext db, Guid userId, Guid rootId, DateTimeOffset now, CancellationToken cancellationToken) =>
        db.Database.ExecuteSqlRawAsync(
            Cte +
            """
            UPDATE todos_active SET status = 'done', completed_at = @now
             WHERE user_id = @user_id AND id IN (SELECT id FROM subtree) AND status IN ('todo', 'in_progress')
            """,
            [.. Parameters(userId, rootId), new NpgsqlParameter<DateTimeOffset>("now", NpgsqlDbType.TimestampTz) { TypedValue = now }],
            cancellationToken);

    /// <summary>Fresh parameters for every statement: a parameter belongs to one command.</summary>
    private static NpgsqlParameter[] Parameters(Guid userId, Guid rootId) =>
    [
        new NpgsqlParameter<Guid>("user_id", NpgsqlDbType.Uuid) { TypedValue = userId },
        new NpgsqlParameter<Guid>("root_id", NpgsqlDbType.Uuid) { TypedValue = rootId },
    ];
}
