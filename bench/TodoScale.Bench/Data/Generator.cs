using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Bench.Stack;
using TodoScale.Data.Schema;

namespace TodoScale.Bench.Data;

/// <summary>One generated user: its id and how many todos it owns (Zipf by rank).</summary>
public sealed record BenchUser(Guid Id, int Rank, int Todos);

/// <summary>What the generator loaded, and how fast.</summary>
public sealed record Generated(long Active, long Archived, long Projects, long AiInteractions, TimeSpan Elapsed)
{
    public long Rows => Active + Archived + Projects + AiInteractions;

    public double RowsPerSecond => Rows / Elapsed.TotalSeconds;
}

/// <summary>
/// Data that looks like real use, loaded with binary COPY. Users are Zipf-distributed by todo count (weight
/// 1/sqrt(rank): at 100k users the head has tens of thousands, the median about 140); a third of the todos are
/// subtasks up to depth 3; about 60% are finished, with completed_at spread over 400 days; projects for a third
/// of the todos; an AI interaction for one open todo in twenty. A finished tree (a root and every subtask
/// under it finish together) that finished more than <see cref="ArchivedBefore"/> ago is loaded straight into
/// todos_archived, as earlier daily passes would have left it; the rest is todos_active.
/// The loader sets session_replication_role = replica for its transactions: the rows are consistent by construction (parents before
/// children, depth, completed_at), so the per-row triggers and foreign-key checks are skipped while loading.
/// </summary>
public sealed class Generator(BenchScale scale, int seed, DateTimeOffset now)
{
    public static readonly TimeSpan ArchivedBefore = TimeSpan.FromDays(60);

    private readonly Random _random = new(seed);

    public IReadOnlyList<BenchUser> Users { get; } = MakeUsers(scale, seed);

    private static List<BenchUser> MakeUsers(BenchScale scale, int seed)
    {
        var random = new Random(seed ^ 0x5eed);
        var weights = Enumerable.Range(1, scale.Users).Select(rank => 1 / Math.Sqrt(rank)).ToArray();
        var total = weights.Sum();
        var users = new List<BenchUser>(scale.Users);
        for (var rank = 1; rank <= scale.Users; rank++)
        {
            var todos = (int)Math.Max(3, Math.Round(scale.Todos * weights[rank - 1] / total));
            users.Add(new BenchUser(NewUuid(random), rank, todos));
        }

        // Load order is random, so any prefix (a point of the scale curve) is a fair sample of users.
        return [.. users.OrderBy(_ => random.Next())];
    }

    /// <summary>
    /// Loads users in order until todos_active reaches <paramref name="activeTarget"/> (or every user is in);
    /// returns the users loaded by this call. Call again to continue where it stopped.
    /// </summary>
    public async Task<(List<BenchUser> Loaded, Generated Counts)> LoadAsync(NpgsqlConnection[] connections, long activeTarget, long activeSoFar, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        // One transaction a connection, its settings SET LOCAL: on Citus they then travel to the workers' shards with
        // it (citus.propagate_set_commands = 'local'), where the triggers and foreign-key checks run.
        var transactions = new List<NpgsqlTransaction>();
        foreach (var connection in connections)
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            transactions.Add(transaction);
            await using var set = new NpgsqlCommand("SET LOCAL session_replication_role = replica; SET LOCAL synchronous_commit = off", connection, transaction);
            await set.ExecuteNonQueryAsync(cancellationToken);
        }

        long active = 0, archived = 0, projects = 0, ai = 0;
        var loaded = new List<BenchUser>();
        await using (var activeCopy = await connections[0].BeginBinaryImportAsync($"COPY todos_active ({TodoColumns.Todo}) FROM STDIN (FORMAT BINARY)", cancellationToken))
        await using (var archivedCopy = await connections[1].BeginBinaryImportAsync($"COPY todos_archived ({TodoColumns.Todo}, archived_at) FROM STDIN (FORMAT BINARY)", cancellationToken))
        await using (var projectCopy = await connections[2].BeginBinaryImportAsync("COPY projects (user_id, id, name, created_at, updated_at) FROM STDIN (FORMAT BINARY)", cancellationToken))
        await using (var aiCopy = await connections[3].BeginBinaryImportAsync("COPY ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at) FROM STDIN (FORMAT BINARY)", cancellationToken))
        {
            while (_next < Users.Count && activeSoFar + active < activeTarget)
            {
                var user = Users[_next++];
                loaded.Add(user);
                var projectIds = new Guid[Math.Min(5, 1 + user.Todos / 200)];
                for (var p = 0; p < projectIds.Length; p++)
                {
                    projectIds[p] = NewUuid(_random);
                    var at = now - Days(400 + p);
                    await projectCopy.StartRowAsync(cancellationToken);
                    await projectCopy.WriteAsync(user.Id, NpgsqlDbType.Uuid, cancellationToken);
                    await projectCopy.WriteAsync(projectIds[p], NpgsqlDbType.Uuid, cancellationToken);
                    await projectCopy.WriteAsync($"Project {p + 1}", NpgsqlDbType.Varchar, cancellationToken);
                    await projectCopy.WriteAsync(at, NpgsqlDbType.TimestampTz, cancellationToken);
                    await projectCopy.WriteAsync(at, NpgsqlDbType.TimestampTz, cancellationToken);
                    projects++;
                }

                foreach (var todo in Trees(user, projectIds))
                {
                    if (todo.ArchivedAt is { } archivedAt)
                    {
                        await WriteTodoAsync(archivedCopy, user.Id, todo, cancellationToken);
                        await archivedCopy.WriteAsync(archivedAt, NpgsqlDbType.TimestampTz, cancellationToken);
                        archived++;
                        continue;
                    }

                    await WriteTodoAsync(activeCopy, user.Id, todo, cancellationToken);
                    active++;
                    if (todo.CompletedAt is null && _random.Next(20) == 0)
                    {
                        await aiCopy.StartRowAsync(cancellationToken);
                        await aiCopy.WriteAsync(user.Id, NpgsqlDbType.Uuid, cancellationToken);
                        await aiCopy.WriteAsync(NewUuid(_random), NpgsqlDbType.Uuid, cancellationToken);
                        await aiCopy.WriteAsync(todo.Id, NpgsqlDbType.Uuid, cancellationToken);
                        await aiCopy.WriteAsync("subtasks", NpgsqlDbType.Varchar, cancellationToken);
                        await aiCopy.WriteAsync("gpt-4o-mini", NpgsqlDbType.Varchar, cancellationToken);
                        await aiCopy.WriteAsync($"Break '{todo.Title}' into subtasks", NpgsqlDbType.Text, cancellationToken);
                        await aiCopy.WriteAsync("1. Outline 2. Draft 3. Review", NpgsqlDbType.Text, cancellationToken);
                        await aiCopy.WriteAsync(40 + _random.Next(200), NpgsqlDbType.Integer, cancellationToken);
                        await aiCopy.WriteAsync(20 + _random.Next(300), NpgsqlDbType.Integer, cancellationToken);
                        await aiCopy.WriteAsync(300 + _random.Next(3000), NpgsqlDbType.Integer, cancellationToken);
                        await aiCopy.WriteAsync(todo.CreatedAt.AddMinutes(1), NpgsqlDbType.TimestampTz, cancellationToken);
                        ai++;
                    }
                }
            }

            await activeCopy.CompleteAsync(cancellationToken);
            await archivedCopy.CompleteAsync(cancellationToken);
            await projectCopy.CompleteAsync(cancellationToken);
            await aiCopy.CompleteAsync(cancellationToken);
        }

        foreach (var transaction in transactions)
        {
            await transaction.CommitAsync(cancellationToken);
            await transaction.DisposeAsync();
        }

        return (loaded, new Generated(active, archived, projects, ai, clock.Elapsed));
    }

    /// <summary>
    /// All of the scale's users and todos in one go (the workloads of their own; the main run loads in curve steps),
    /// archive months made first, the tables vacuumed and analyzed after.
    /// </summary>
    public static async Task<(List<BenchUser> Loaded, Generated Generated)> LoadAllAsync(BenchStack stack, BenchScale scale, int seed, CancellationToken cancellationToken)
    {
        await using (var db = stack.OpenPrimary())
        {
            await Baselines.ExecuteAsync(db, """
                SELECT todoscale_ensure_archive_months('todos_archived', (now() - interval '400 days')::date, 16);
                SELECT todoscale_ensure_archive_months('ai_interactions_archived', (now() - interval '400 days')::date, 16);
                """, cancellationToken);
        }

        var generator = new Generator(scale, seed, DateTimeOffset.UtcNow);
        var loaders = Enumerable.Range(0, 4).Select(_ => stack.OpenPrimary("bench-load")).ToArray();
        List<BenchUser> loaded;
        Generated generated;
        try
        {
            (loaded, generated) = await generator.LoadAsync(loaders, long.MaxValue, 0, cancellationToken);
        }
        finally
        {
            foreach (var loader in loaders)
            {
                await loader.DisposeAsync();
            }
        }

        await using (var db = stack.OpenPrimary())
        {
            foreach (var table in new[] { "todos_active", "todos_archived", "projects", "ai_interactions" })
            {
                await Baselines.ExecuteAsync(db, $"VACUUM ANALYZE {table}", cancellationToken);
            }
        }

        return (loaded, generated);
    }

    public bool Done => _next >= Users.Count;

    private int _next;

    private sealed record Todo(
        Guid Id, Guid? ParentId, Guid? ProjectId, string Title, string? Description, string Status, short Priority,
        DateTimeOffset? DueDate, DateTimeOffset? CompletedAt, bool AiGenerated, short Depth, DateTimeOffset CreatedAt,
        DateTimeOffset? ArchivedAt);

    /// <summary>A user's todos, parents before children: roots, and a third subtasks of a recent todo (depth &lt;= 3).</summary>
    private IEnumerable<Todo> Trees(BenchUser user, Guid[] projects)
    {
        var recent = new List<Todo>(8);
        for (var k = 0; k < user.Todos; k++)
        {
            var parent = recent.Count > 0 && _random.Next(3) == 0 ? recent[_random.Next(recent.Count)] : null;
            Todo todo;
            if (parent is null)
            {
                var finished = _random.NextDouble() < 0.6;
                var completed = finished ? now - Days(_random.NextDouble() * 400) : (DateTimeOffset?)null;
                var created = completed is { } c ? c - Days(_random.NextDouble() * 30) : now - Days(_random.NextDouble() * 400);
                var archivedAt = completed is { } done && now - done > ArchivedBefore ? done + Days(30) : (DateTimeOffset?)null;
                todo = Make(created, completed, null, 0, archivedAt);
                recent.Clear();
            }
            else
            {
                var created = parent.CreatedAt + TimeSpan.FromMinutes(_random.NextDouble() * 60);
                var completed = parent.CompletedAt is { } pc ? (pc - TimeSpan.FromMinutes(_random.NextDouble() * 60) is var cc && cc > created ? cc : created) : (DateTimeOffset?)null;
                todo = Make(created, completed, parent.Id, (short)(parent.Depth + 1), parent.ArchivedAt);
            }

            if (todo.Depth < 3)
            {
                recent.Add(todo);
            }

            yield return todo;
        }

        Todo Make(DateTimeOffset created, DateTimeOffset? completed, Guid? parentId, short depth, DateTimeOffset? archivedAt)
        {
            var status = completed is null ? (_random.Next(10) < 7 ? "todo" : "in_progress") : (_random.Next(10) == 0 ? "cancelled" : "done");
            return new Todo(
                Guid.CreateVersion7(created), parentId,
                _random.Next(3) == 0 ? projects[_random.Next(projects.Length)] : null,
                $"Todo {_random.Next(1_000_000)}",
                _random.Next(5) == 0 ? "Details that a user typed in, a line or two of them for context." : null,
                status, (short)(1 + _random.Next(5)),
                _random.Next(10) < 4 ? created + Days(1 + _random.Next(60)) : null,
                completed, parentId is not null && _random.Next(4) == 0, depth, created, archivedAt);
        }
    }

    private static async Task WriteTodoAsync(NpgsqlBinaryImporter copy, Guid user, Todo todo, CancellationToken cancellationToken)
    {
        await copy.StartRowAsync(cancellationToken);
        await copy.WriteAsync(todo.Id, NpgsqlDbType.Uuid, cancellationToken);
        await copy.WriteAsync(user, NpgsqlDbType.Uuid, cancellationToken);
        await WriteNullableAsync(copy, todo.ParentId, NpgsqlDbType.Uuid, cancellationToken);
        await WriteNullableAsync(copy, todo.ProjectId, NpgsqlDbType.Uuid, cancellationToken);
        await copy.WriteAsync(todo.Title, NpgsqlDbType.Varchar, cancellationToken);
        await WriteNullableAsync(copy, todo.Description, NpgsqlDbType.Text, cancellationToken);
        await copy.WriteAsync(todo.Status, NpgsqlDbType.Text, cancellationToken);
        await copy.WriteAsync(todo.Priority, NpgsqlDbType.Smallint, cancellationToken);
        await WriteNullableAsync(copy, todo.DueDate, NpgsqlDbType.TimestampTz, cancellationToken);
        await WriteNullableAsync(copy, todo.CompletedAt, NpgsqlDbType.TimestampTz, cancellationToken);
        await copy.WriteAsync(todo.AiGenerated, NpgsqlDbType.Boolean, cancellationToken);
        await copy.WriteAsync(todo.Depth, NpgsqlDbType.Smallint, cancellationToken);
        await copy.WriteAsync(todo.CreatedAt, NpgsqlDbType.TimestampTz, cancellationToken);
        await copy.WriteAsync(todo.CompletedAt ?? todo.CreatedAt, NpgsqlDbType.TimestampTz, cancellationToken);
    }

    private static Task WriteNullableAsync(NpgsqlBinaryImporter copy, Guid? value, NpgsqlDbType type, CancellationToken cancellationToken) =>
        value is { } v ? copy.WriteAsync(v, type, cancellationToken) : copy.WriteNullAsync(cancellationToken);

    private static Task WriteNullableAsync(NpgsqlBinaryImporter copy, DateTimeOffset? value, NpgsqlDbType type, CancellationToken cancellationToken) =>
        value is { } v ? copy.WriteAsync(v, type, cancellationToken) : copy.WriteNullAsync(cancellationToken);

    private static Task WriteNullableAsync(NpgsqlBinaryImporter copy, string? value, NpgsqlDbType type, CancellationToken cancellationToken) =>
        value is { } v ? copy.WriteAsync(v, type, cancellationToken) : copy.WriteNullAsync(cancellationToken);

    private static TimeSpan Days(double days) => TimeSpan.FromDays(days);

    private static Guid NewUuid(Random random)
    {
        Span<byte> bytes = stackalloc byte[16];
        random.NextBytes(bytes);
        bytes[6] = (byte)((bytes[6] & 0x0F) | 0x40);
        bytes[8] = (byte)((bytes[8] & 0x3F) | 0x80);
        return new Guid(bytes, bigEndian: true);
    }
}
