using System.Diagnostics;
using Npgsql;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Partitions;

/// <summary>
/// What a re-split must preserve, recorded independently of it: a shadow copy of todos_active and ai_interactions,
/// kept by row triggers on the parents (cloned onto every partition, the new ones included when they are attached),
/// seeded in the same transaction that creates the triggers. After the split, each table's content checksum must equal
/// its shadow's: every committed write, in the partition it went to, ended up in the new layout, once, as written.
/// </summary>
internal static class SplitShadow
{
    public static Task CreateAsync(string db) => Sql.ExecuteAsync(db,
        """
        BEGIN;
        LOCK TABLE todos_active, ai_interactions IN SHARE MODE;
        CREATE TABLE shadow_todos (LIKE todos_active, PRIMARY KEY (user_id, id));
        CREATE TABLE shadow_ai (LIKE ai_interactions, PRIMARY KEY (user_id, id));
        INSERT INTO shadow_todos SELECT * FROM todos_active;
        INSERT INTO shadow_ai SELECT * FROM ai_interactions;
        CREATE FUNCTION shadow_write() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
        BEGIN
            IF TG_OP IN ('UPDATE', 'DELETE') THEN
                EXECUTE format('DELETE FROM %I WHERE user_id = $1 AND id = $2', TG_ARGV[0]) USING OLD.user_id, OLD.id;
            END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN
                EXECUTE format('INSERT INTO %I SELECT ($1).*', TG_ARGV[0]) USING NEW;
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER shadow AFTER INSERT OR UPDATE OR DELETE ON todos_active FOR EACH ROW EXECUTE FUNCTION shadow_write('shadow_todos');
        CREATE TRIGGER shadow AFTER INSERT OR UPDATE OR DELETE ON ai_interactions FOR EACH ROW EXECUTE FUNCTION shadow_write('shadow_ai');
        COMMIT;
        """);

    /// <summary>Row count and md5 over every row's text, in key order.</summary>
    public static Task<string> ChecksumAsync(string db, string table) => Sql.ScalarAsync<string>(db,
        $"SELECT count(*) || ' rows, md5 ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t.user_id, t.id)), '-') FROM {table} t");
}

/// <summary>
/// The API's traffic during a split, as the API's role under row-level security: writers that insert roots and
/// subtasks (some in a project), rename and complete, delete whole subtrees, delete and re-create projects (the
/// foreign key's SET NULL reaching the copies), add and delete AI interactions; and a reader that keeps counting the
/// rows of users nobody writes to, which must never change. Every write's latency is kept; any failure is a finding.
/// </summary>
internal sealed class SplitTraffic(string db, IReadOnlyList<Guid> frozenUsers)
{
    private readonly Lock _gate = new();

    public List<string> Failures { get; } = [];

    public long Writes { get; private set; }

    public long Reads { get; private set; }

    public TimeSpan LongestWrite => Slowest.Count == 0 ? TimeSpan.Zero : Slowest.Max(s => s.Elapsed);

    /// <summary>The five slowest writes: how long, when, and what.</summary>
    public List<(TimeSpan Elapsed, DateTimeOffset At, string Sql)> Slowest { get; } = [];

    public Task RunAsync(int writers, CancellationToken stop) => Task.WhenAll(
        [.. Enumerable.Range(0, writers).Select(w => Task.Run(() => WriteAsync(w, stop))), Task.Run(() => ReadAsync(stop))]);

    private async Task WriteAsync(int writer, CancellationToken stop)
    {
        var random = new Random(writer);
        var users = Enumerable.Range(0, 40).Select(_ => (Id: Guid.CreateVersion7(), Project: Guid.CreateVersion7(), Roots: new List<Guid>(), Ai: new List<Guid>())).ToList();
        await using var connection = await Sql.OpenAsync(Roles.As(db, Roles.App));
        foreach (var user in users)
        {
            await InTenantAsync(connection, user.Id, $"INSERT INTO projects (user_id, id, name) VALUES ('{user.Id}', '{user.Project}', 'split project')");
        }

        while (!stop.IsCancellationRequested)
        {
            var user = users[random.Next(users.Count)];
            var roll = random.Next(100);
            var root = user.Roots.Count > 0 ? user.Roots[random.Next(user.Roots.Count)] : (Guid?)null;
            string sql;
            if (roll < 35 || root is null)
            {
                var id = Guid.CreateVersion7();
                var project = random.Next(3) == 0 ? $"'{user.Project}'" : "NULL";
                sql = $"INSERT INTO todos_active (user_id, id, project_id, title) VALUES ('{user.Id}', '{id}', {project}, 'root {id}')";
                user.Roots.Add(id);
            }
            else if (roll < 55)
            {
                sql = $"INSERT INTO todos_active (user_id, id, parent_todo_id, title, ai_generated) VALUES ('{user.Id}', '{Guid.CreateVersion7()}', '{root}', 'step', true)";
            }
            else if (roll < 70)
            {
                sql = random.Next(2) == 0
                    ? $"UPDATE todos_active SET title = 'renamed {random.Next()}', priority = {random.Next(1, 6)} WHERE user_id = '{user.Id}' AND id = '{root}'"
                    : $"UPDATE todos_active SET status = 'done', completed_at = now() WHERE user_id = '{user.Id}' AND parent_todo_id = '{root}'";
            }
            else if (roll < 80)
            {
                sql = $"DELETE FROM todos_active WHERE user_id = '{user.Id}' AND id = '{root}'";
                user.Roots.Remove(root.Value);
            }
            else if (roll < 90)
            {
                var id = Guid.CreateVersion7();
                sql = $"INSERT INTO ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out) VALUES ('{user.Id}', '{id}', '{root}', 'subtasks', 'test-model', 'split me', 'ok', 12, 34)";
                user.Ai.Add(id);
            }
            else if (roll < 95 && user.Ai.Count > 0)
            {
                var ai = user.Ai[random.Next(user.Ai.Count)];
                sql = $"DELETE FROM ai_interactions WHERE user_id = '{user.Id}' AND id = '{ai}'";
                user.Ai.Remove(ai);
            }
            else
            {
                sql = $"DELETE FROM projects WHERE user_id = '{user.Id}' AND id = '{user.Project}'; INSERT INTO projects (user_id, id, name) VALUES ('{user.Id}', '{user.Project}', 'split project')";
            }

            var started = Stopwatch.GetTimestamp();
            try
            {
                await InTenantAsync(connection, user.Id, sql);
            }
            catch (Exception e) when (e is NpgsqlException && !stop.IsCancellationRequested)
            {
                lock (_gate) { Failures.Add($"write failed: {sql}: {e.Message}"); }
            }

            var elapsed = Stopwatch.GetElapsedTime(started);
            lock (_gate)
            {
                Writes++;
                if (Slowest.Count < 5 || elapsed > Slowest.Min(w => w.Elapsed))
                {
                    Slowest.Add((elapsed, DateTimeOffset.UtcNow, sql[..Math.Min(sql.Length, 60)]));
                    Slowest.Sort((a, b) => b.Elapsed.CompareTo(a.Elapsed));
                    Slowest.RemoveRange(Math.Min(5, Slowest.Count), Slowest.Count - Math.Min(5, Slowest.Count));
                }
            }
        }
    }

    private async Task ReadAsync(CancellationToken stop)
    {
        await using var owner = await Sql.OpenAsync(db);
        var expected = new Dictionary<Guid, (long Todos, long Ai)>();
        foreach (var user in frozenUsers)
        {
            expected[user] = (await Sql.ScalarAsync<long>(owner, $"SELECT count(*) FROM todos_active WHERE user_id = '{user}'"),
                              await Sql.ScalarAsync<long>(owner, $"SELECT count(*) FROM ai_interactions WHERE user_id = '{user}'"));
        }

        var total = (Todos: expected.Values.Sum(e => e.Todos), Ai: expected.Values.Sum(e => e.Ai));
        var all = string.Join(", ", frozenUsers.Select(u => $"'{u}'"));
        await using var app = await Sql.OpenAsync(Roles.As(db, Roles.App));
        var index = 0;
        while (!stop.IsCancellationRequested)
        {
            var user = frozenUsers[index++ % frozenUsers.Count];
            await using var transaction = await app.BeginTransactionAsync(CancellationToken.None);
            await Sql.ExecuteAsync(app, $"SET LOCAL app.user_id = '{user}'", transaction);
            var seen = (await Sql.ScalarAsync<long>(app, "SELECT count(*) FROM todos_active", transaction),
                        await Sql.ScalarAsync<long>(app, "SELECT count(*) FROM ai_interactions", transaction));
            await transaction.CommitAsync(CancellationToken.None);
            var everyone = (await Sql.ScalarAsync<long>(owner, $"SELECT count(*) FROM todos_active WHERE user_id IN ({all})"),
                            await Sql.ScalarAsync<long>(owner, $"SELECT count(*) FROM ai_interactions WHERE user_id IN ({all})"));
            lock (_gate)
            {
                Reads++;
                if (seen != expected[user])
                {
                    Failures.Add($"read of user {user} saw {seen}, expected {expected[user]}");
                }

                if (everyone != total)
                {
                    Failures.Add($"read of the frozen users saw {everyone}, expected {total}");
                }
            }
        }
    }

    private static async Task InTenantAsync(NpgsqlConnection connection, Guid user, string sql)
    {
        await using var transaction = await connection.BeginTransactionAsync();
        await Sql.ExecuteAsync(connection, $"SET LOCAL app.user_id = '{user}'; {sql}", transaction);
        await transaction.CommitAsync();
    }
}
