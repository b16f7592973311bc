using System.Diagnostics;
using Npgsql;
using TodoScale.Data.Legacy;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Legacy;

/// <summary>The legacy side of the migration tests: the original design's table with data, a backfill run as an operator runs it.</summary>
public static class LegacyData
{
    /// <summary>Every row of `todos`, and of TodoScale's active + archived tables, as one checksum over (id, content).</summary>
    public const string LegacyChecksum = $"SELECT md5(string_agg(md5(ROW({LegacySchema.Columns})::text), '' ORDER BY id)) FROM todos";

    public const string TodoScaleChecksum =
        $"SELECT md5(string_agg(md5(ROW({LegacySchema.Columns})::text), '' ORDER BY id)) FROM (SELECT {LegacySchema.Columns} FROM todos_active UNION ALL SELECT {LegacySchema.Columns} FROM todos_archived) s";

    /// <summary>
    /// Rows of todos_active whose tree is broken: a subtask without its parent (same user), a depth other than its
    /// parent's + 1 (or 0 for a root), a project that does not exist. What the foreign keys and the depth trigger
    /// guarantee, checked after a backfill that ran without them.
    /// </summary>
    public const string BrokenTrees =
        """
        SELECT count(*) FROM todos_active c
          LEFT JOIN todos_active p ON p.user_id = c.user_id AND p.id = c.parent_todo_id
         WHERE c.depth IS DISTINCT FROM CASE WHEN c.parent_todo_id IS NULL THEN 0 ELSE p.depth + 1 END
            OR (c.project_id IS NOT NULL AND NOT EXISTS (SELECT FROM projects j WHERE j.user_id = c.user_id AND j.id = c.project_id))
        """;

    /// <summary>
    /// Creates `todos` and fills it with trees: roots, children, grandchildren, some in projects, 60% finished;
    /// <paramref name="alsoUser"/> gets trees too (a user the test knows).
    /// </summary>
    public static async Task SeedAsync(string db, int users, int rootsPerUser, Guid? alsoUser = null)
    {
        await using var connection = await Sql.OpenAsync(db);
        await Sql.ExecuteAsync(connection, LegacyTable.CreateTable);
        await using var seed = new NpgsqlCommand(
            """
            CREATE TEMP TABLE seed AS
            SELECT gen_random_uuid() AS id, u.user_id, NULL::uuid AS parent, 0 AS depth, g,
                   CASE WHEN g % 4 = 0 THEN md5(u.user_id::text)::uuid END AS project_id
              FROM (SELECT gen_random_uuid() AS user_id FROM generate_series(1, @users)
                    UNION ALL SELECT @also WHERE @also IS NOT NULL) u, generate_series(1, @roots) g;
            INSERT INTO seed SELECT gen_random_uuid(), user_id, id, 1, c, project_id FROM seed, generate_series(1, 2) c WHERE depth = 0;
            INSERT INTO seed SELECT gen_random_uuid(), user_id, id, 2, 1, project_id FROM seed WHERE depth = 1 AND g = 1;
            INSERT INTO todos (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, depth, created_at, updated_at)
            SELECT id, user_id, parent, project_id, 'todo ' || g || ' at depth ' || depth, CASE WHEN g % 2 = 0 THEN 'notes' END,
                   CASE WHEN random() < 0.6 THEN 'done' ELSE 'todo' END, 1 + g % 5,
                   CASE WHEN g % 3 = 0 THEN now() + make_interval(days => g) END, NULL, depth,
                   now() - make_interval(days => 100 - depth), now() - make_interval(days => 50 - depth)
              FROM seed;
            UPDATE todos SET completed_at = created_at + interval '3 days' WHERE status = 'done';
            DROP TABLE seed;
            ANALYZE todos;
            """, connection);
        seed.Parameters.AddWithValue("users", users);
        seed.Parameters.AddWithValue("roots", rootsPerUser);
        seed.Parameters.Add(new NpgsqlParameter<Guid?>("also", NpgsqlTypes.NpgsqlDbType.Uuid) { TypedValue = alsoUser });
        await seed.ExecuteNonQueryAsync();
    }

    /// <summary>
    /// `legacy backfill` as a process with small batches, killed (kill -9 of the process tree) exactly
    /// <paramref name="kills"/> times, then run to the end. Each kill lands when legacy_migration's count of copied rows
    /// is seen to have grown by a random 1 to <see cref="KillAfterRowsAtMost"/> rows since that run started: mid-work
    /// on a fast machine and on a slow one, where a kill after a fixed time could come before the first batch or after
    /// the last. Fails the test when a run meant to be killed finished first, or the last run never finishes; with
    /// <paramref name="writer"/>, also when the legacy writer made no change between the first run's start and the last kill.
    /// </summary>
    public static async Task<(int Kills, HashSet<long> Positions, string LastOutput)> BackfillKilledAsync(
        string db, int kills, ITestOutputHelper log, LegacyWriter? writer = null, params (string Name, string Value)[] settings)
    {
        await using var connection = await Sql.OpenAsync(db);
        var random = new Random(20261126);
        var positions = new HashSet<long>();
        var changesBefore = writer?.Changes ?? 0;
        for (var killed = 0; killed < kills; killed++)
        {
            var output = new System.Text.StringBuilder();
            var start = await Sql.ScalarAsync<long>(connection, CopiedRows);
            var rows = random.Next(1, KillAfterRowsAtMost + 1);
            using var process = StartBackfill(db, "50", output, settings);
            var copied = await Progress.UntilAsync<long>(connection, CopiedRows, now => now >= start + rows, process,
                $"backfill run {killed + 1}: {rows} rows copied after {start}");
            if (copied)
            {
                process.Kill(entireProcessTree: true);
            }

            await process.WaitForExitAsync();
            process.WaitForExit(); // the output's last lines
            if (!copied || process.ExitCode == 0) // it ended on its own before the kill landed
            {
                Assert.True(process.ExitCode == 0, $"backfill exited {process.ExitCode}: {output}");
                Assert.Fail($"killed only {killed} times: the backfill finished first");
            }

            positions.Add(await Sql.ScalarAsync<long>(connection, CopiedRows));
        }

        if (writer is not null)
        {
            Assert.True(writer.Changes > changesBefore,
                $"the legacy writer made no change while the backfill was killed {kills} times ({changesBefore} -> {writer.Changes} changes)");
        }

        var last = new System.Text.StringBuilder();
        using var final = StartBackfill(db, "2000", last, settings);
        await Progress.ExitAsync(final, "the backfill run to the end", TimeSpan.FromMinutes(10));
        Assert.True(final.ExitCode == 0, $"backfill exited {final.ExitCode}: {last}");
        log.WriteLine(last.ToString().Trim());
        return (kills, positions, last.ToString());
    }

    /// <summary>Rows the backfill has copied so far, committed with each batch (so exact across kills).</summary>
    private const string CopiedRows = "SELECT backfill_rows FROM legacy_migration";

    /// <summary>The most rows a run to be killed is watched copying first: two rounds of the three workers' 50-row batches.</summary>
    private const int KillAfterRowsAtMost = 2 * 3 * 50;

    public static Process StartBackfill(string connectionString, string batchSize, System.Text.StringBuilder output, params (string Name, string Value)[] settings) =>
        OperatorCli.Start(["legacy", "backfill", "--batch-size", batchSize, "--parallel", "3"], connectionString, output, settings);
}

/// <summary>
/// The legacy application: writes straight to `todos` (no tenant setting, no TodoScale rules), one transaction
/// per change: new roots, subtasks (also under rows the backfill has not reached), renames, completions, and
/// deletes of whole subtrees. Any failure of its writes fails the test: the migration must never fail it. With
/// <paramref name="dirty"/> it writes as a careless application does, values the rules take (NULL status, priority,
/// depth and created_at; 'In Progress', ' Done ', priority 0 and 9; 'Done' without a completed_at).
/// </summary>
public sealed class LegacyWriter(string connectionString, IReadOnlyCollection<Guid> leaveAlone, bool dirty = false)
{
    public LegacyWriter(string connectionString, Guid leaveAlone) : this(connectionString, [leaveAlone])
    {
    }

    public List<Guid> Inserted { get; } = [];

    public List<Guid> Deleted { get; } = [];

    public int Changes { get; private set; }

    public async Task RunAsync(CancellationToken stop)
    {
        await using var connection = await Sql.OpenAsync(connectionString);
        var random = new Random(7);
        var others = $"user_id <> ALL('{{{string.Join(",", leaveAlone)}}}'::uuid[])";
        string[] statuses = ["NULL", "'In Progress'", "' Done '", "'TODO'", "'todo'"];
        string[] priorities = ["NULL", "0", "9", "2"];
        while (!stop.IsCancellationRequested)
        {
            // A random existing todo, uniformly over the ids (any depth, any progress of the backfill).
            var pick = await Sql.ScalarAsync<string>(connection,
                $"""
                SELECT coalesce(
                    (SELECT id::text || ' ' || user_id::text || ' ' || coalesce(depth, 0) FROM todos WHERE id >= gen_random_uuid() AND {others} ORDER BY id LIMIT 1),
                    (SELECT id::text || ' ' || user_id::text || ' ' || coalesce(depth, 0) FROM todos WHERE {others} LIMIT 1))
                """);
            var parts = pick.Split(' ');
            var (id, user, depth) = (Guid.Parse(parts[0]), Guid.Parse(parts[1]), int.Parse(parts[2], System.Globalization.CultureInfo.InvariantCulture));
            var newId = Guid.CreateVersion7();
            switch (random.Next(6))
            {
                case 0 when dirty:
                    await Sql.ExecuteAsync(connection,
                        $"""
                        INSERT INTO todos (id, user_id, title, status, priority, depth, created_at)
                        VALUES ('{newId}', '{user}', 'new root', {statuses[random.Next(statuses.Length)]}, {priorities[random.Next(priorities.Length)]}, NULL, NULL)
                        """);
                    Inserted.Add(newId);
                    break;
                case 0:
                    await Sql.ExecuteAsync(connection, $"INSERT INTO todos (id, user_id, title) VALUES ('{newId}', '{user}', 'new root')");
                    Inserted.Add(newId);
                    break;
                case 1 when depth < 4:
                    var status = dirty ? statuses[random.Next(statuses.Length)] : "'todo'";
                    await Sql.ExecuteAsync(connection,
                        $"INSERT INTO todos (id, user_id, parent_todo_id, title, depth, status) VALUES ('{newId}', '{user}', '{id}', 'new subtask', {depth + 1}, {status})");
                    Inserted.Add(newId);
                    break;
                case 2:
                    await Sql.ExecuteAsync(connection, $"UPDATE todos SET title = title || '!', updated_at = now() WHERE id = '{id}'");
                    break;
                case 3 when dirty:
                    await Sql.ExecuteAsync(connection, $"UPDATE todos SET status = 'Done', updated_at = now() WHERE id = '{id}'");
                    break;
                case 3:
                    await Sql.ExecuteAsync(connection,
                        $"UPDATE todos SET status = 'done', completed_at = now(), updated_at = now() WHERE id = '{id}' AND status <> 'done'");
                    break;
                case 4:
                    await Sql.ExecuteAsync(connection, $"UPDATE todos SET status = 'todo', completed_at = NULL, priority = 1, updated_at = now() WHERE id = '{id}'");
                    break;
                default:
                    var gone = await Sql.ColumnAsync<Guid>(connection,
                        $"""
                        WITH RECURSIVE subtree AS (
                            SELECT id FROM todos WHERE id = '{id}'
                            UNION ALL
                            SELECT t.id FROM todos t JOIN subtree s ON t.parent_todo_id = s.id)
                        DELETE FROM todos WHERE id IN (SELECT id FROM subtree) RETURNING id
                        """);
                    Deleted.AddRange(gone);
                    break;
            }

            Changes++;
        }
    }
}
