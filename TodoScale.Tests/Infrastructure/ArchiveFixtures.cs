using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>A clock that says what the test wants (the archiver takes "now" from a TimeProvider).</summary>
public sealed class FixedClock(DateTimeOffset now) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = now;

    public override DateTimeOffset GetUtcNow() => Now;

    /// <summary>
    /// The wall clock's time to the whole millisecond, for a test's fixed clock: PostgreSQL keeps microseconds, and
    /// a time with 100 ns ticks compares differently as a parameter (truncated) and as SQL text (rounded).
    /// </summary>
    public static DateTimeOffset WallNow()
    {
        var now = DateTimeOffset.UtcNow;
        return now.AddTicks(-(now.Ticks % TimeSpan.TicksPerMillisecond));
    }
}

/// <summary>Seeds todo trees and checks the archive invariants: every row in exactly one table, content unchanged.</summary>
public static class ArchiveData
{
    /// <summary>Content of every todo, active and archived, as (count, md5) over all columns but archived_at.</summary>
    public const string ChecksumSql =
        """
        SELECT count(*)::bigint, coalesce(md5(string_agg(row_text, '' ORDER BY id)), '') FROM (
            SELECT id, concat_ws('|', id, user_id, parent_todo_id, project_id, title, description, status, priority,
                                 due_date, completed_at, ai_generated, depth, created_at, updated_at) AS row_text FROM todos_active
            UNION ALL
            SELECT id, concat_ws('|', id, user_id, parent_todo_id, project_id, title, description, status, priority,
                                 due_date, completed_at, ai_generated, depth, created_at, updated_at) FROM todos_archived) s
        """;

    /// <summary>
    /// <paramref name="users"/> users with <paramref name="rootsPerUser"/> trees each: a third of the roots open,
    /// the rest finished 1..90 days before <paramref name="now"/>; each root with 2 children and one grandchild,
    /// 90% finished. Built in SQL (a few seconds for 100k rows).
    /// </summary>
    public static async Task SeedTreesAsync(string connectionString, int users, int rootsPerUser, DateTimeOffset now)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(
            """
            CREATE TEMP TABLE seed_roots AS
            SELECT gen_random_uuid() AS id, u.user_id, g,
                   CASE WHEN g % 3 = 0 THEN 'todo' ELSE 'done' END AS status,
                   CASE WHEN g % 3 = 0 THEN NULL ELSE @now - make_interval(days => 1 + (g * 7 + u.n) % 90) END AS completed_at
              FROM (SELECT gen_random_uuid() AS user_id, n FROM generate_series(1, @users) n) u, generate_series(1, @roots) g;
            INSERT INTO todos_active (id, user_id, title, status, completed_at, created_at)
            SELECT id, user_id, 'root ' || g, status, completed_at, @now - interval '200 days' FROM seed_roots;
            CREATE TEMP TABLE seed_children AS
            SELECT gen_random_uuid() AS id, r.user_id, r.id AS parent_id, c,
                   CASE WHEN random() < 0.1 THEN 'in_progress' ELSE 'done' END AS status,
                   @now - make_interval(days => 1 + floor(random() * 90)::int) AS done_at
              FROM seed_roots r, generate_series(1, 2) c;
            INSERT INTO todos_active (id, user_id, parent_todo_id, title, status, completed_at, created_at)
            SELECT id, user_id, parent_id, 'child ' || c, status, CASE WHEN status = 'done' THEN done_at END, @now - interval '150 days'
              FROM seed_children;
            INSERT INTO todos_active (id, user_id, parent_todo_id, title, status, completed_at, created_at)
            SELECT gen_random_uuid(), user_id, id, 'grandchild', status, CASE WHEN status = 'done' THEN done_at END, @now - interval '120 days'
              FROM seed_children WHERE c = 1;
            DROP TABLE seed_roots, seed_children;
            ANALYZE todos_active;
            """, connection);
        command.Parameters.AddWithValue("now", now);
        command.Parameters.AddWithValue("users", users);
        command.Parameters.AddWithValue("roots", rootsPerUser);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task<(long Count, string Md5)> ChecksumAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(ChecksumSql, connection);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetString(1));
    }

    /// <summary>Asserts the invariants of a moved archive: no id twice, no archived subtask without its archived parent, nothing open archived.</summary>
    public static async Task AssertConsistentAsync(string connectionString, DateTimeOffset? cutoff = null)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        // Each broken rule names its first rows, so a failure on a loaded machine says which interleaving it was.
        var duplicated = await Sql.ColumnAsync<string>(connection,
            """
            SELECT id::text FROM (SELECT id FROM todos_active UNION ALL SELECT id FROM todos_archived) s
             GROUP BY id HAVING count(*) > 1 ORDER BY id LIMIT 5
            """);
        Assert.True(duplicated.Count == 0, $"todos in both tables (or twice): {string.Join(", ", duplicated)}");
        var orphans = await Sql.ColumnAsync<string>(connection,
            """
            SELECT format('%s (parent %s, %s)', a.id, a.parent_todo_id,
                          CASE WHEN EXISTS (SELECT FROM todos_active p WHERE p.user_id = a.user_id AND p.id = a.parent_todo_id)
                               THEN 'the parent is active' ELSE 'the parent is nowhere' END)
              FROM todos_archived a WHERE parent_todo_id IS NOT NULL
               AND NOT EXISTS (SELECT FROM todos_archived p WHERE p.user_id = a.user_id AND p.id = a.parent_todo_id)
             ORDER BY a.id LIMIT 5
            """);
        Assert.True(orphans.Count == 0, $"archived subtasks whose parent is not archived: {string.Join("; ", orphans)}");
        var open = await Sql.ColumnAsync<string>(connection,
            "SELECT format('%s (%s, completed_at %s)', id, status, completed_at) FROM todos_archived WHERE status NOT IN ('done', 'cancelled') OR completed_at IS NULL ORDER BY id LIMIT 5");
        Assert.True(open.Count == 0, $"archived todos that are not finished: {string.Join("; ", open)}");
        if (cutoff is { } before)
        {
            await using var command = new NpgsqlCommand("SELECT count(*) FROM todos_archived WHERE completed_at >= @cutoff", connection);
            command.Parameters.AddWithValue("cutoff", before);
            var recent = (long)(await command.ExecuteScalarAsync())!;
            Assert.True(recent == 0, $"{recent} archived todos completed after the cut-off {before:O}");
        }
    }
}
