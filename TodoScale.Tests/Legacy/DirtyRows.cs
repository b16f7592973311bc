using Npgsql;
using NpgsqlTypes;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Legacy;

/// <summary>What should become of a legacy row: taken with these values, rejected for this reason, or deleted by the data set itself.</summary>
public abstract record Fate;

/// <summary>
/// Taken: the row in todos_active has these values. A null <see cref="CompletedAt"/> means none; times equal to
/// <see cref="DirtyRows.MigrationStart"/> mean legacy_migration.started_at.
/// </summary>
public sealed record TakenAs(string Status, short Priority, short Depth, bool AiGenerated, DateTimeOffset? CompletedAt, DateTimeOffset CreatedAt, DateTimeOffset UpdatedAt) : Fate;

public sealed record RejectedFor(string Reason) : Fate;

/// <summary>Deleted from `todos` by the data set's own steps (a parent removed under its subtask).</summary>
public sealed record Deleted : Fate;

/// <summary>
/// One row of the original design's `todos` as a legacy application may have written it, and its fate by the rules
/// of migration V14. <see cref="AfterTrigger"/>: the fate when the row is written through the dual-write trigger,
/// where it differs (a row that was fine when written, before a later write made its chain a cycle).
/// </summary>
public sealed record DirtyRow(
    string Case, Guid Id, Guid UserId, Guid? ParentId, string Title, string? Status, long? Priority, long? Depth, bool? AiGenerated,
    DateTimeOffset? CreatedAt, DateTimeOffset? UpdatedAt, DateTimeOffset? CompletedAt, Fate Fate, Fate? AfterTrigger = null);

/// <summary>
/// A data set holding every kind of value and tree the original design's `todos` can hold that TodoScale's tables do
/// not take as they are (issue 21, point 3), for one user, written as a legacy application writes (plain SQL, parents
/// first), with each row's fate. Then the steps a legacy application takes later: a move that closes a cycle, a
/// parent deleted under its subtask.
/// </summary>
public sealed class DirtyRows
{
    /// <summary>Stands for legacy_migration.started_at in an expected time.</summary>
    public static readonly DateTimeOffset MigrationStart = DateTimeOffset.MinValue;

    // Fixed times of the data (values in rows, not the clock of any component).
    public static readonly DateTimeOffset Created = new(2026, 1, 10, 10, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset Updated = new(2026, 1, 11, 11, 0, 0, TimeSpan.Zero);
    public static readonly DateTimeOffset Completed = new(2026, 1, 12, 12, 0, 0, TimeSpan.Zero);

    private readonly List<DirtyRow> _rows = [];

    public DirtyRows(Guid userId, Guid otherUsersTodo)
    {
        UserId = userId;
        var open = new TakenAs("todo", 3, 0, false, null, Created, Updated);

        // Values, each taken by a rule.
        Row("status NULL, open", null, fate: open);
        Row("status NULL, completed_at set", null, completed: Completed, fate: open with { Status = "done", CompletedAt = Completed });
        Row("status 'Done'", "Done", completed: Completed, fate: open with { Status = "done", CompletedAt = Completed });
        Row("status ' todo ' (spaces, tab)", " todo\t", fate: open);
        Row("status 'In Progress'", "In Progress", fate: open with { Status = "in_progress" });
        Row("status 'in-progress'", "in-progress", fate: open with { Status = "in_progress" });
        Row("status 'to do'", "to do", fate: open);
        Row("status 'CANCELED', no completed_at", "CANCELED", fate: open with { Status = "cancelled", CompletedAt = Updated });
        Row("status 'completed'", "completed", completed: Completed, fate: open with { Status = "done", CompletedAt = Completed });
        Row("status blank", "   ", fate: open);
        Row("completed_at on an open todo", "in_progress", completed: Completed, fate: open with { Status = "in_progress" });
        Row("done without completed_at nor updated_at", "done", noUpdated: true,
            fate: open with { Status = "done", CompletedAt = Created, UpdatedAt = Created });
        Row("priority NULL", "todo", priority: null, fate: open);
        Row("priority 0", "todo", priority: 0, fate: open with { Priority = 1 });
        Row("priority -7", "todo", priority: -7, fate: open with { Priority = 1 });
        Row("priority 9", "todo", priority: 9, fate: open with { Priority = 5 });
        Row("priority 2147483647", "todo", priority: int.MaxValue, fate: open with { Priority = 5 });
        Row("priority 4 (as is)", "todo", priority: 4, fate: open with { Priority = 4 });
        Row("ai_generated NULL", "todo", ai: null, fate: open);
        Row("ai_generated true", "todo", ai: true, fate: open with { AiGenerated = true });
        Row("created_at NULL", "todo", noCreated: true, fate: open with { CreatedAt = Updated });
        Row("updated_at NULL", "todo", noUpdated: true, fate: open with { UpdatedAt = Created });
        Row("created_at, updated_at NULL, done", "done", noCreated: true, noUpdated: true, completed: Completed,
            fate: open with { Status = "done", CompletedAt = Completed, CreatedAt = Completed, UpdatedAt = Completed });
        Row("no time at all", "todo", noCreated: true, noUpdated: true, fate: open with { CreatedAt = MigrationStart, UpdatedAt = MigrationStart });
        Row("depth NULL on a root", "todo", depth: null, fate: open);
        Row("depth 5 on a root", "todo", depth: 5, fate: open);

        // A tree whose stored depths lie, the subtask's id sorting before its parent's (made first: ids are time-ordered).
        var ids = Enumerable.Range(0, 4).Select(_ => Guid.CreateVersion7()).Reverse().ToArray();
        Row("lying depths: root stored at 3", "todo", depth: 3, id: ids[0], fate: open);
        Row("lying depths: child stored NULL", "todo", depth: null, id: ids[1], parent: ids[0], fate: open with { Depth = 1 });
        Row("lying depths: grandchild stored -1", "todo", depth: -1, id: ids[2], parent: ids[1], fate: open with { Depth = 2 });
        Row("lying depths: great-grandchild stored 0", "todo", depth: 0, id: ids[3], parent: ids[2], fate: open with { Depth = 3 });

        // A chain as deep as Schema:MaxDepth (5) allows, and two rows below it.
        Guid? above = null;
        for (var level = 0; level <= 7; level++)
        {
            above = Row($"chain at depth {level}", "todo", depth: 0, parent: above,
                fate: level <= 5 ? open with { Depth = (short)level } : new RejectedFor("too_deep"));
        }

        // Rows rejected on their own values, each taking its subtree.
        var blank = Row("blank title", "todo", title: "   ", fate: new RejectedFor("blank_title"));
        Row("under a blank title", "todo", parent: blank, depth: 1, fate: new RejectedFor("ancestor_rejected"));
        UnknownStatus = Row("status 'archived'", "archived", fate: new RejectedFor("unknown_status"));
        var child = Row("under an unknown status", "todo", parent: UnknownStatus, depth: 1, fate: new RejectedFor("ancestor_rejected"));
        Row("two below an unknown status", "todo", parent: child, depth: 2, fate: new RejectedFor("ancestor_rejected"));
        FixedByRetry.AddRange([child, _rows[^1].Id]);

        // Broken trees.
        var orphan = Row("parent missing", "todo", parent: Guid.CreateVersion7(), depth: 1, fate: new RejectedFor("parent_missing"));
        Row("under a row whose parent is missing", "todo", parent: orphan, depth: 2, fate: new RejectedFor("ancestor_rejected"));
        Row("parent of another user", "todo", parent: otherUsersTodo, depth: 1, fate: new RejectedFor("parent_other_user"));
        var self = Guid.CreateVersion7();
        Row("its own parent", "todo", id: self, parent: self, fate: new RejectedFor("cycle"));

        // A cycle closed by a later move (CycleMove): A under B, B under A; C under A.
        CycleA = Row("cycle: A (moved under B)", "todo", fate: new RejectedFor("cycle"));
        var b = Row("cycle: B (under A)", "todo", parent: CycleA, depth: 1, fate: new RejectedFor("cycle"), afterTrigger: open with { Depth = 1 });
        var c = Row("cycle: C (under A)", "todo", parent: CycleA, depth: 1, fate: new RejectedFor("ancestor_rejected"), afterTrigger: open with { Depth = 1 });
        CycleB = b;
        FixedByRetry.AddRange([b, c]);

        // A todo moved under a parent that is written only later (at the fix): rejected until then; the trigger's
        // earlier copy (a root) is written over by the retry.
        MovedUnderLater = Row("moved under a parent written later", "todo", fate: new RejectedFor("parent_missing"));
        FixedByRetry.Add(MovedUnderLater);

        // A parent deleted under its subtask (DeleteParent): the subtask is left with a missing parent.
        DeletedParent = Row("deleted parent", "todo", fate: new Deleted());
        Row("under a deleted parent", "todo", parent: DeletedParent, depth: 1, fate: new RejectedFor("parent_missing"));
    }

    public Guid UserId { get; }

    public IReadOnlyList<DirtyRow> Rows => _rows;

    public Guid UnknownStatus { get; }

    public Guid CycleA { get; }

    public Guid CycleB { get; }

    public Guid DeletedParent { get; }

    public Guid MovedUnderLater { get; }

    /// <summary>The parent <see cref="MovedUnderLater"/> is moved under, written only by <see cref="FixAtSourceSql"/>.</summary>
    public Guid WrittenLater { get; } = Guid.CreateVersion7();

    /// <summary>Rows rejected only for an ancestor or a cycle that the fixes in <see cref="FixAtSourceSql"/> remove: a backfill run again takes them.</summary>
    public List<Guid> FixedByRetry { get; } = [];

    /// <summary>The legacy application's later writes: the move that closes the cycle, the delete of a parent alone, a move under a parent not written yet.</summary>
    public string LaterWritesSql =>
        $"""
        UPDATE todos SET parent_todo_id = '{CycleB}' WHERE id = '{CycleA}';
        DELETE FROM todos WHERE id = '{DeletedParent}';
        UPDATE todos SET parent_todo_id = '{WrittenLater}', depth = 1 WHERE id = '{MovedUnderLater}';
        """;

    /// <summary>
    /// Fixing the rejected rows at the source, as an operator would: the missing parent written, the unknown status
    /// spelled as a known one, the cycle broken (A a root again); every other rejected row deleted.
    /// </summary>
    public string FixAtSourceSql
    {
        get
        {
            var keep = FixedByRetry.Append(UnknownStatus).Append(CycleA).ToHashSet();
            var delete = _rows.Where(r => r.Fate is RejectedFor && !keep.Contains(r.Id)).Select(r => $"'{r.Id}'");
            return $"""
                INSERT INTO todos (id, user_id, title) VALUES ('{WrittenLater}', '{UserId}', 'written later');
                UPDATE todos SET status = 'Done' WHERE id = '{UnknownStatus}';
                UPDATE todos SET parent_todo_id = NULL WHERE id = '{CycleA}';
                DELETE FROM todos WHERE id IN ({string.Join(", ", delete)});
                """;
        }
    }

    /// <summary>The rows' fates once fixed at the source and retried: the unknown status is done, the cycle's rows are a tree.</summary>
    public Fate FixedFate(DirtyRow row) =>
        row.Id == UnknownStatus ? new TakenAs("done", 3, 0, false, Updated, Created, Updated)
        : row.Id == CycleA ? new TakenAs("todo", 3, 0, false, null, Created, Updated)
        : FixedByRetry.Contains(row.Id) ? new TakenAs("todo", 3, (short)(row.Case.StartsWith("two below", StringComparison.Ordinal) ? 2 : 1), false, null, Created, Updated)
        : row.Fate is RejectedFor ? new Deleted()
        : row.Fate;

    /// <summary>Writes the rows, parents first, one statement each (through the trigger when it is on).</summary>
    public async Task InsertAsync(NpgsqlConnection connection)
    {
        foreach (var row in _rows)
        {
            await using var insert = new NpgsqlCommand(
                """
                INSERT INTO todos (id, user_id, parent_todo_id, title, status, priority, depth, ai_generated, created_at, updated_at, completed_at)
                VALUES (@id, @user, @parent, @title, @status, @priority, @depth, @ai, @created, @updated, @completed)
                """, connection);
            insert.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
            insert.Parameters.Add(new NpgsqlParameter<Guid>("user", row.UserId));
            insert.Parameters.Add(new NpgsqlParameter("parent", NpgsqlDbType.Uuid) { Value = (object?)row.ParentId ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter<string>("title", row.Title));
            insert.Parameters.Add(new NpgsqlParameter("status", NpgsqlDbType.Varchar) { Value = (object?)row.Status ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("priority", NpgsqlDbType.Integer) { Value = (object?)(int?)row.Priority ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("depth", NpgsqlDbType.Integer) { Value = (object?)(int?)row.Depth ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("ai", NpgsqlDbType.Boolean) { Value = (object?)row.AiGenerated ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("created", NpgsqlDbType.TimestampTz) { Value = (object?)row.CreatedAt ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("updated", NpgsqlDbType.TimestampTz) { Value = (object?)row.UpdatedAt ?? DBNull.Value });
            insert.Parameters.Add(new NpgsqlParameter("completed", NpgsqlDbType.TimestampTz) { Value = (object?)row.CompletedAt ?? DBNull.Value });
            await insert.ExecuteNonQueryAsync();
        }
    }

    /// <summary>
    /// Checks every row against <paramref name="fateOf"/>: a taken row is in todos_active with exactly the expected
    /// values (and no reject entry); a rejected row has its reason in legacy_rejects and no copy, unless
    /// <paramref name="oldCopiesAllowed"/> (written through the trigger: the version taken before a later write was
    /// rejected stays); a deleted row is nowhere. Returns the failures, one line per row.
    /// </summary>
    public async Task<List<string>> CheckAsync(NpgsqlConnection connection, Func<DirtyRow, Fate> fateOf, bool oldCopiesAllowed)
    {
        var started = await Sql.ScalarAsync<DateTime>(connection, "SELECT started_at FROM legacy_migration");
        var failures = new List<string>();
        foreach (var row in _rows)
        {
            var fate = fateOf(row);
            await using var command = new NpgsqlCommand(
                """
                SELECT (SELECT ROW(status, priority, depth, ai_generated, completed_at, created_at, updated_at)::text FROM todos_active WHERE user_id = @user AND id = @id),
                       (SELECT reason FROM legacy_rejects WHERE user_id = @user AND id = @id)
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<Guid>("user", row.UserId));
            command.Parameters.Add(new NpgsqlParameter<Guid>("id", row.Id));
            await using var reader = await command.ExecuteReaderAsync();
            await reader.ReadAsync();
            var (actual, reason) = (reader.IsDBNull(0) ? null : reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1));
            await reader.DisposeAsync();
            switch (fate)
            {
                case TakenAs taken:
                    var expected = await ExpectedRowAsync(connection, taken, started);
                    if (actual != expected || reason is not null)
                    {
                        failures.Add($"{row.Case}: expected taken as {expected}, found {actual ?? "no row"}{(reason is null ? "" : $", rejected ({reason})")}");
                    }

                    break;
                case RejectedFor rejected:
                    if (reason != rejected.Reason || (actual is not null && !oldCopiesAllowed))
                    {
                        failures.Add($"{row.Case}: expected rejected ({rejected.Reason}), found {(reason is null ? "no reject" : $"rejected ({reason})")}, {actual ?? "no row"}");
                    }

                    break;
                case Deleted:
                    if (actual is not null)
                    {
                        failures.Add($"{row.Case}: deleted, yet in todos_active as {actual}");
                    }

                    break;
            }
        }

        return failures;
    }

    /// <summary>The expected values as PostgreSQL prints the same ROW(...) of todos_active.</summary>
    private static async Task<string> ExpectedRowAsync(NpgsqlConnection connection, TakenAs taken, DateTime started)
    {
        await using var command = new NpgsqlCommand(
            "SELECT ROW(@status::text, @priority::smallint, @depth::smallint, @ai, @completed::timestamptz, @created::timestamptz, @updated::timestamptz)::text", connection);
        command.Parameters.Add(new NpgsqlParameter<string>("status", taken.Status));
        command.Parameters.Add(new NpgsqlParameter<short>("priority", taken.Priority));
        command.Parameters.Add(new NpgsqlParameter<short>("depth", taken.Depth));
        command.Parameters.Add(new NpgsqlParameter<bool>("ai", taken.AiGenerated));
        command.Parameters.Add(new NpgsqlParameter("completed", NpgsqlDbType.TimestampTz) { Value = (object?)Resolve(taken.CompletedAt) ?? DBNull.Value });
        command.Parameters.Add(new NpgsqlParameter("created", NpgsqlDbType.TimestampTz) { Value = Resolve(taken.CreatedAt)! });
        command.Parameters.Add(new NpgsqlParameter("updated", NpgsqlDbType.TimestampTz) { Value = Resolve(taken.UpdatedAt)! });
        return (string)(await command.ExecuteScalarAsync())!;

        object? Resolve(DateTimeOffset? at) => at == MigrationStart ? DateTime.SpecifyKind(started, DateTimeKind.Utc) : at?.UtcDateTime;
    }

    private Guid Row(
        string name, string? status, DateTimeOffset? completed = null, long? priority = 3, long? depth = 0, bool? ai = false,
        bool noCreated = false, bool noUpdated = false, Guid? parent = null, Guid? id = null, string? title = null,
        Fate? fate = null, Fate? afterTrigger = null)
    {
        var row = new DirtyRow(name, id ?? Guid.CreateVersion7(), UserId, parent, title ?? name, status, priority, depth, ai,
            noCreated ? null : Created, noUpdated ? null : Updated, completed, fate!, afterTrigger);
        _rows.Add(row);
        return row.Id;
    }
}
