using Npgsql;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Schema;

/// <summary>
/// What the database itself refuses, whoever writes: each case checked by SQLSTATE and constraint, on one PostgreSQL
/// and on a Citus cluster (the same tests; the triggers run on the workers' shards there).
/// </summary>
public abstract class ConstraintTests(IDatabaseEngine server)
{
    private readonly Guid _user = Guid.CreateVersion7();

    [EngineFact]
    public async Task A_parent_owned_by_another_user_is_rejected()
    {
        await using var connection = await OpenAsync();
        var othersRoot = await InsertAsync(connection, Guid.CreateVersion7());

        var error = await Assert.ThrowsAsync<PostgresException>(() => InsertAsync(connection, _user, parent: othersRoot));
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, error.SqlState);
    }

    [EngineFact]
    public async Task Depth_is_computed_from_the_parent_and_limited_to_5_levels_below_a_root()
    {
        await using var connection = await OpenAsync();
        var chain = new List<Guid> { await InsertAsync(connection, _user) };
        for (var level = 1; level <= 5; level++)
        {
            chain.Add(await InsertAsync(connection, _user, parent: chain[^1], depth: 0)); // the writer's depth is ignored
        }

        Assert.Equal([0, 1, 2, 3, 4, 5], await DepthsAsync(connection, chain));
        var error = await Assert.ThrowsAsync<PostgresException>(() => InsertAsync(connection, _user, parent: chain[^1]));
        AssertViolation(error, PostgresErrorCodes.CheckViolation, "todos_active_depth_check");
    }

    [EngineFact]
    public async Task Moving_a_subtree_recomputes_its_depths_and_refuses_cycles_and_overflows()
    {
        await using var connection = await OpenAsync();
        var root = await InsertAsync(connection, _user);
        var child = await InsertAsync(connection, _user, parent: root);
        var grandchild = await InsertAsync(connection, _user, parent: child);
        var otherRoot = await InsertAsync(connection, _user);

        await ExecuteAsync(connection, $"UPDATE todos_active SET parent_todo_id = '{otherRoot}' WHERE user_id = '{_user}' AND id = '{root}'");
        Assert.Equal([1, 2, 3], await DepthsAsync(connection, [root, child, grandchild]));

        var cycle = await Assert.ThrowsAsync<PostgresException>(() =>
            ExecuteAsync(connection, $"UPDATE todos_active SET parent_todo_id = '{grandchild}' WHERE user_id = '{_user}' AND id = '{root}'"));
        Assert.Equal(PostgresErrorCodes.CheckViolation, cycle.SqlState);
        Assert.Contains("own subtask", cycle.MessageText);

        var deep = await InsertAsync(connection, _user);
        for (var level = 1; level <= 3; level++)
        {
            deep = await InsertAsync(connection, _user, parent: deep);
        }

        // root's subtree is 3 levels tall; under a todo at depth 3 its leaf would sit at depth 6.
        var overflow = await Assert.ThrowsAsync<PostgresException>(() =>
            ExecuteAsync(connection, $"UPDATE todos_active SET parent_todo_id = '{deep}' WHERE user_id = '{_user}' AND id = '{root}'"));
        AssertViolation(overflow, PostgresErrorCodes.CheckViolation, "todos_active_depth_check");
        Assert.Equal([1, 2, 3], await DepthsAsync(connection, [root, child, grandchild])); // nothing half-applied
    }

    [EngineFact]
    public async Task In_one_statement_a_child_may_follow_its_parent_but_never_precede_it()
    {
        await using var connection = await OpenAsync();
        var (parent, child) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        await ExecuteAsync(connection,
            $"INSERT INTO todos_active (user_id, id, parent_todo_id, title) VALUES ('{_user}', '{parent}', NULL, 'p'), ('{_user}', '{child}', '{parent}', 'c')");
        Assert.Equal([0, 1], await DepthsAsync(connection, [parent, child]));

        // Before its parent the child's depth cannot be known: refused, instead of stored wrong and let through by
        // the foreign key (which checks only at the end of the statement).
        var (late, early) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        var error = await Assert.ThrowsAsync<PostgresException>(() => ExecuteAsync(connection,
            $"INSERT INTO todos_active (user_id, id, parent_todo_id, title) VALUES ('{_user}', '{early}', '{late}', 'c'), ('{_user}', '{late}', NULL, 'p')"));
        Assert.Equal(PostgresErrorCodes.ForeignKeyViolation, error.SqlState);
    }

    [EngineFact]
    public async Task A_title_of_500_characters_is_stored_and_one_of_501_is_rejected()
    {
        await using var connection = await OpenAsync();
        await InsertAsync(connection, _user, title: new string('x', 500));
        var error = await Assert.ThrowsAsync<PostgresException>(() => InsertAsync(connection, _user, title: new string('x', 501)));
        Assert.Equal(PostgresErrorCodes.StringDataRightTruncation, error.SqlState);
    }

    [EngineTheory]
    [InlineData("doing", false, "todos_active_status_check")]
    [InlineData("todo", true, "todos_active_completed_check")]
    [InlineData("in_progress", true, "todos_active_completed_check")]
    [InlineData("done", false, "todos_active_completed_check")]
    [InlineData("cancelled", false, "todos_active_completed_check")]
    public async Task Status_and_completed_at_must_agree(string status, bool completed, string constraint)
    {
        await using var connection = await OpenAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => InsertAsync(connection, _user, status: status, completed: completed));
        AssertViolation(error, PostgresErrorCodes.CheckViolation, constraint);

        // The agreeing combination of the same status is accepted (the check is not refusing everything).
        if (status != "doing")
        {
            await InsertAsync(connection, _user, status: status, completed: !completed);
        }
    }

    [EngineTheory]
    [InlineData(0)]
    [InlineData(6)]
    public async Task Priority_is_1_to_5(short priority)
    {
        await using var connection = await OpenAsync();
        var error = await Assert.ThrowsAsync<PostgresException>(() => InsertAsync(connection, _user, priority: priority));
        AssertViolation(error, PostgresErrorCodes.CheckViolation, "todos_active_priority_check");
        await InsertAsync(connection, _user, priority: (short)(priority == 0 ? 1 : 5));
    }

    [EngineFact]
    public async Task Updated_at_follows_every_update_and_user_id_never_changes()
    {
        await using var connection = await OpenAsync();
        var id = await InsertAsync(connection, _user);
        var before = await Sql.ScalarAsync<DateTime>(connection, $"SELECT updated_at FROM todos_active WHERE user_id = '{_user}' AND id = '{id}'");

        await ExecuteAsync(connection, $"UPDATE todos_active SET title = 'renamed', updated_at = '2000-01-01' WHERE user_id = '{_user}' AND id = '{id}'");
        var after = await Sql.ScalarAsync<DateTime>(connection, $"SELECT updated_at FROM todos_active WHERE user_id = '{_user}' AND id = '{id}'");
        Assert.True(after > before, $"updated_at {before:O} -> {after:O}");

        // user_id: refused by the trigger on PostgreSQL; on Citus by Citus itself (the distribution column), first.
        var error = await Assert.ThrowsAsync<PostgresException>(() =>
            ExecuteAsync(connection, $"UPDATE todos_active SET user_id = '{Guid.CreateVersion7()}' WHERE user_id = '{_user}' AND id = '{id}'"));
        Assert.Equal(server.Engine == "citus" ? PostgresErrorCodes.FeatureNotSupported : PostgresErrorCodes.CheckViolation, error.SqlState);
        var renumbered = await Assert.ThrowsAsync<PostgresException>(() =>
            ExecuteAsync(connection, $"UPDATE todos_active SET id = '{Guid.CreateVersion7()}' WHERE user_id = '{_user}' AND id = '{id}'"));
        Assert.Equal(PostgresErrorCodes.CheckViolation, renumbered.SqlState);
    }

    [EngineFact]
    public async Task Deleting_a_parent_deletes_its_subtree_and_deleting_a_project_keeps_its_todos()
    {
        await using var connection = await OpenAsync();
        var project = Guid.CreateVersion7();
        await ExecuteAsync(connection, $"INSERT INTO projects (user_id, id, name) VALUES ('{_user}', '{project}', 'home')");
        var root = await InsertAsync(connection, _user, project: project);
        var child = await InsertAsync(connection, _user, parent: root);
        await InsertAsync(connection, _user, parent: child);
        var kept = await InsertAsync(connection, _user, project: project);

        await ExecuteAsync(connection, $"DELETE FROM todos_active WHERE user_id = '{_user}' AND id = '{root}'");
        await ExecuteAsync(connection, $"DELETE FROM projects WHERE user_id = '{_user}' AND id = '{project}'");

        Assert.Equal([kept], await Sql.ColumnAsync<Guid>(connection, $"SELECT id FROM todos_active WHERE user_id = '{_user}'"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, $"SELECT count(project_id) FROM todos_active WHERE user_id = '{_user}'"));
    }

    /// <summary>The SQLSTATE, and the constraint: by its field on PostgreSQL; on Citus, which drops that field and
    /// names the shard's copy (todos_active_depth_check_102345), in the message.</summary>
    private void AssertViolation(PostgresException error, string sqlState, string constraint)
    {
        Assert.Equal(sqlState, error.SqlState);
        if (server.Engine == "postgres")
        {
            Assert.Equal(constraint, error.ConstraintName);
        }
        else
        {
            Assert.Contains(constraint, error.ConstraintName ?? error.MessageText, StringComparison.Ordinal);
        }
    }

    private async Task<NpgsqlConnection> OpenAsync() => await Sql.OpenAsync(await server.MigratedDatabaseForAsync(GetType()));

    private static async Task<Guid> InsertAsync(
        NpgsqlConnection connection, Guid user, Guid? parent = null, short? depth = null, string title = "a todo",
        string status = "todo", bool completed = false, short priority = 3, Guid? project = null)
    {
        var id = Guid.CreateVersion7();
        await using var command = new NpgsqlCommand("""
            INSERT INTO todos_active (user_id, id, parent_todo_id, project_id, title, status, priority, completed_at, depth)
            VALUES (@user, @id, @parent, @project, @title, @status, @priority, @completed, coalesce(@depth, 0))
            """, connection);
        command.Parameters.AddWithValue("user", user);
        command.Parameters.AddWithValue("id", id);
        command.Parameters.AddWithValue("parent", (object?)parent ?? DBNull.Value);
        command.Parameters.AddWithValue("project", (object?)project ?? DBNull.Value);
        command.Parameters.AddWithValue("title", title);
        command.Parameters.AddWithValue("status", status);
        command.Parameters.AddWithValue("priority", priority);
        command.Parameters.AddWithValue("completed", completed ? DateTimeOffset.UtcNow : (object)DBNull.Value);
        command.Parameters.Add(new NpgsqlParameter<short?>("depth", NpgsqlTypes.NpgsqlDbType.Smallint) { TypedValue = depth });
        await command.ExecuteNonQueryAsync();
        return id;
    }

    private static Task ExecuteAsync(NpgsqlConnection connection, string sql) => Sql.ExecuteAsync(connection, sql);

    private async Task<List<int>> DepthsAsync(NpgsqlConnection connection, IReadOnlyList<Guid> ids)
    {
        var depths = new List<int>();
        foreach (var id in ids)
        {
            depths.Add(await Sql.ScalarAsync<short>(connection, $"SELECT depth FROM todos_active WHERE user_id = '{_user}' AND id = '{id}'"));
        }

        return depths;
    }
}

[Collection(PostgresCollection.Name)]
public sealed class ConstraintTestsOnPostgres(PostgresServer server) : ConstraintTests(server);

[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class ConstraintTestsOnCitus(CitusCluster cluster) : ConstraintTests(cluster);
