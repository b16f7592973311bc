using Npgsql;
using NpgsqlTypes;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// A realistic tenant mix written with binary COPY as the owner: one heavy user (thousands of todos with
/// subtasks, projects, due dates, every status and AI interactions) among many light users, then ANALYZE, so
/// query plans are the ones PostgreSQL picks at scale and not the ones it picks for an empty table.
/// </summary>
internal sealed class Workload
{
    private static readonly string[] Statuses = ["todo", "todo", "todo", "todo", "todo", "todo", "todo", "in_progress", "done", "cancelled"];

    public Guid HeavyUser { get; } = Guid.CreateVersion7();

    public List<Guid> LightUsers { get; } = [];

    public List<Guid> HeavyProjects { get; } = [];

    public List<Guid> HeavyRoots { get; } = [];

    public DateTimeOffset Now { get; } = DateTimeOffset.UtcNow;

    public static async Task<Workload> SeedAsync(string connectionString, int heavyTodos = 6000, int lightUsers = 2000, int todosPerLightUser = 5)
    {
        var workload = new Workload();
        var random = new Random(42);
        await using var connection = await Sql.OpenAsync(connectionString);

        await using (var projects = await connection.BeginBinaryImportAsync("COPY projects (user_id, id, name) FROM STDIN (FORMAT BINARY)"))
        {
            for (var i = 0; i < 20; i++)
            {
                var id = Guid.CreateVersion7();
                workload.HeavyProjects.Add(id);
                await projects.WriteRowAsync(default, workload.HeavyUser, id, $"project {i}");
            }

            await projects.CompleteAsync();
        }

        var roots = new List<Row>();
        var children = new List<Row>();
        for (var i = 0; i < heavyTodos; i++)
        {
            var row = workload.NewRow(workload.HeavyUser, random, i);
            if (i % 5 == 4 && workload.HeavyRoots.Count > 0)
            {
                children.Add(row with { ParentId = workload.HeavyRoots[random.Next(workload.HeavyRoots.Count)] });
            }
            else
            {
                roots.Add(row);
                workload.HeavyRoots.Add(row.Id);
            }
        }

        for (var u = 0; u < lightUsers; u++)
        {
            var user = Guid.CreateVersion7();
            workload.LightUsers.Add(user);
            for (var i = 0; i < todosPerLightUser; i++)
            {
                roots.Add(workload.NewRow(user, random, i) with { ProjectId = null });
            }
        }

        await CopyTodosAsync(connection, roots);
        await CopyTodosAsync(connection, children); // after their parents: depth is computed from the stored parent

        await using (var interactions = await connection.BeginBinaryImportAsync(
            "COPY ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at) FROM STDIN (FORMAT BINARY)"))
        {
            foreach (var (user, todo, i) in workload.HeavyRoots.Take(3000).Select((id, i) => (workload.HeavyUser, id, i))
                         .Concat(roots.Where(r => r.UserId != workload.HeavyUser).Select((r, i) => (r.UserId, r.Id, i))))
            {
                await interactions.WriteRowAsync(default, user, Guid.CreateVersion7(), todo, "generate_subtasks", "test-model",
                    "split this todo", "[\"a\",\"b\"]", 40, 12, 300 + (i % 500), workload.Now.AddHours(-(i % 20 == 0 ? 90 * 24 + i % 500 : i % (90 * 24))));
            }

            await interactions.CompleteAsync();
        }

        // Finished work the archiver moved this month: the heavy user's history and some of everyone else's.
        await using (var archived = await connection.BeginBinaryImportAsync(
            "COPY todos_archived (user_id, id, title, status, priority, completed_at, ai_generated, depth, created_at, updated_at, archived_at) FROM STDIN (FORMAT BINARY)"))
        {
            var users = Enumerable.Repeat(workload.HeavyUser, heavyTodos / 2).Concat(workload.LightUsers);
            foreach (var (user, i) in users.Select((user, i) => (user, i)))
            {
                var completed = workload.Now.AddDays(-31 - (i % 20));
                await archived.WriteRowAsync(default, user, Guid.CreateVersion7(), $"archived {i}", "done", (short)3, completed, false,
                    (short)0, completed.AddDays(-3), completed, workload.Now);
            }

            await archived.CompleteAsync();
        }

        await Sql.ExecuteAsync(connection, "ANALYZE");
        return workload;
    }

    private Row NewRow(Guid user, Random random, int i)
    {
        var status = Statuses[random.Next(Statuses.Length)];
        var finished = status is "done" or "cancelled";
        return new Row(
            user, Guid.CreateVersion7(), null,
            random.Next(2) == 0 ? HeavyProjects[random.Next(HeavyProjects.Count)] : null,
            $"todo {i}", status, (short)random.Next(1, 6),
            random.Next(10) < 6 ? Now.AddDays(random.Next(-30, 90)) : null,
            finished ? Now.AddHours(-random.Next(0, 32 * 24)) : null, // steady state: archived daily at 30 days
            Now.AddMinutes(-random.Next(0, 500_000)));
    }

    private static async Task CopyTodosAsync(NpgsqlConnection connection, List<Row> rows)
    {
        await using var copy = await connection.BeginBinaryImportAsync(
            "COPY todos_active (user_id, id, parent_todo_id, project_id, title, status, priority, due_date, completed_at, created_at) FROM STDIN (FORMAT BINARY)");
        foreach (var row in rows)
        {
            await copy.StartRowAsync();
            await copy.WriteAsync(row.UserId, NpgsqlDbType.Uuid);
            await copy.WriteAsync(row.Id, NpgsqlDbType.Uuid);
            await WriteNullableAsync(copy, row.ParentId, NpgsqlDbType.Uuid);
            await WriteNullableAsync(copy, row.ProjectId, NpgsqlDbType.Uuid);
            await copy.WriteAsync(row.Title, NpgsqlDbType.Varchar);
            await copy.WriteAsync(row.Status, NpgsqlDbType.Text);
            await copy.WriteAsync(row.Priority, NpgsqlDbType.Smallint);
            await WriteNullableAsync(copy, row.Due, NpgsqlDbType.TimestampTz);
            await WriteNullableAsync(copy, row.CompletedAt, NpgsqlDbType.TimestampTz);
            await copy.WriteAsync(row.CreatedAt, NpgsqlDbType.TimestampTz);
        }

        await copy.CompleteAsync();
    }

    private static async Task WriteNullableAsync<T>(NpgsqlBinaryImporter copy, T? value, NpgsqlDbType type)
        where T : struct
    {
        if (value is { } present)
        {
            await copy.WriteAsync(present, type);
        }
        else
        {
            await copy.WriteNullAsync();
        }
    }

    private sealed record Row(
        Guid UserId, Guid Id, Guid? ParentId, Guid? ProjectId, string Title, string Status, short Priority,
        DateTimeOffset? Due, DateTimeOffset? CompletedAt, DateTimeOffset CreatedAt);
}
