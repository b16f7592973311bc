using Npgsql;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Schema;

/// <summary>
/// The tenant wall as the API's role meets it: todoscale_app with app.user_id = A, where B's rows live in the very
/// same partition as A's, so naming the partition directly is a real attempt to read B's rows.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class RowLevelSecurityTests(PostgresServer server)
{
    private sealed record Tenants(string ConnectionString, Guid A, Guid B, string Partition);

    private Task<Tenants> SeededAsync() => server.SharedForAsync(GetType(), async () =>
    {
        var connectionString = await server.MigratedDatabaseForAsync(GetType());
        var a = Guid.CreateVersion7();
        var partition = PartitionHash.PartitionName("todos_active", a, 16);
        Guid b;
        do
        {
            b = Guid.CreateVersion7();
        }
        while (PartitionHash.PartitionName("todos_active", b, 16) != partition);

        foreach (var user in new[] { a, b })
        {
            var project = Guid.CreateVersion7();
            await Sql.ExecuteAsync(connectionString, $"""
                INSERT INTO projects (user_id, id, name) VALUES ('{user}', '{project}', 'work');
                INSERT INTO todos_active (user_id, id, title, project_id)
                SELECT '{user}', gen_random_uuid(), 'todo ' || i, '{project}' FROM generate_series(1, 3) i;
                INSERT INTO ai_interactions (user_id, id, todo_id, kind, model, prompt)
                SELECT user_id, gen_random_uuid(), id, 'generate_subtasks', 'm', 'p' FROM todos_active WHERE user_id = '{user}';
                """);
        }

        return new Tenants(connectionString, a, b, partition);
    });

    [Fact]
    public async Task The_app_sees_only_its_tenants_rows_through_every_parent_table()
    {
        var (connectionString, a, b, _) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));
        await using var transaction = await connection.BeginTenantTransactionAsync(a);

        foreach (var table in new[] { "todos_active", "projects", "ai_interactions" })
        {
            var owners = await Sql.ColumnAsync<Guid>(connection, $"SELECT DISTINCT user_id FROM {table}", transaction);
            Assert.Equal([a], owners);
            Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {table} WHERE user_id = '{b}'", transaction));
        }
    }

    [Fact]
    public async Task Naming_the_shared_partition_directly_shows_none_of_the_other_tenants_rows()
    {
        var (connectionString, a, b, partition) = await SeededAsync();
        Assert.Equal(6L, await Sql.ScalarAsync<long>(connectionString, $"SELECT count(*) FROM {partition} WHERE user_id IN ('{a}', '{b}')"));

        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));
        await using var transaction = await connection.BeginTenantTransactionAsync(a);
        Assert.Equal(3L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {partition}", transaction));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, $"SELECT count(*) FROM {partition} WHERE user_id = '{b}'", transaction));
        Assert.Equal(0, await Sql.ScalarAsync<int>(connection,
            $"WITH gone AS (UPDATE {partition} SET title = 'mine now' WHERE user_id = '{b}' RETURNING 1) SELECT count(*)::int FROM gone", transaction));
    }

    [Theory]
    [InlineData("INSERT INTO todos_active (user_id, id, title) VALUES ('{b}', gen_random_uuid(), 'planted')")]
    [InlineData("INSERT INTO {partition} (user_id, id, title) VALUES ('{b}', gen_random_uuid(), 'planted')")]
    [InlineData("INSERT INTO projects (user_id, id, name) VALUES ('{b}', gen_random_uuid(), 'planted')")]
    [InlineData("UPDATE todos_active SET user_id = '{b}' WHERE user_id = '{a}'")]
    public async Task The_app_cannot_write_a_row_for_another_tenant(string statement)
    {
        var (connectionString, a, b, partition) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));
        await using var transaction = await connection.BeginTenantTransactionAsync(a);

        var sql = statement.Replace("{a}", a.ToString()).Replace("{b}", b.ToString()).Replace("{partition}", partition);
        var error = await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecuteAsync(connection, sql, transaction));
        Assert.Contains(error.SqlState, new[] { PostgresErrorCodes.InsufficientPrivilege, PostgresErrorCodes.CheckViolation });
    }

    [Fact]
    public async Task A_transaction_that_never_named_its_tenant_fails_closed()
    {
        var (connectionString, a, _, _) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));

        var never = await Assert.ThrowsAsync<PostgresException>(() => Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active"));
        Assert.Equal(PostgresErrorCodes.UndefinedObject, never.SqlState); // unrecognized configuration parameter

        await using (var transaction = await connection.BeginTenantTransactionAsync(a))
        {
            await transaction.CommitAsync();
        }

        // After a tenant's transaction ended, the setting is empty again on this pooled connection: still no rows.
        var after = await Assert.ThrowsAsync<PostgresException>(() => Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active"));
        Assert.Equal(PostgresErrorCodes.InvalidTextRepresentation, after.SqlState);
    }

    [Fact]
    public async Task The_audit_log_is_append_only_for_the_app_and_the_archiver()
    {
        var (connectionString, a, _, _) = await SeededAsync();
        foreach (var role in new[] { Roles.App, Roles.Archiver })
        {
            await using var connection = await Sql.OpenAsync(Roles.As(connectionString, role));
            await Sql.ExecuteAsync(connection, $"INSERT INTO audit_log (actor_kind, actor, action, target) VALUES ('user', '{a}', 'todo.create', 'x')");
            foreach (var statement in new[] { "UPDATE audit_log SET action = 'forged'", "DELETE FROM audit_log", "TRUNCATE audit_log", "SELECT count(*) FROM audit_log" })
            {
                var error = await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecuteAsync(connection, statement));
                Assert.Equal(PostgresErrorCodes.InsufficientPrivilege, error.SqlState);
            }
        }

        Assert.Equal(2L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM audit_log WHERE action = 'todo.create'"));
    }

    [Fact]
    public async Task The_archiver_sees_every_tenant_without_naming_one_and_can_make_archive_months()
    {
        var (connectionString, a, b, _) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.Archiver));

        var owners = await Sql.ColumnAsync<Guid>(connection, "SELECT DISTINCT user_id FROM todos_active ORDER BY 1");
        Assert.Equal(new[] { a, b }.Order(), owners);
        // Four months after the database's today: after any month the migrations premade (3 ahead of theirs).
        var month = await Sql.ScalarAsync<DateTime>(connection, "SELECT (now() AT TIME ZONE 'UTC' + interval '4 months')::date::timestamp");
        Assert.Equal(1, await Sql.ScalarAsync<int>(connection, $"SELECT todoscale_ensure_archive_months('todos_archived', '{month:yyyy-MM-dd}', 0)"));
        Assert.Equal(0, await Sql.ScalarAsync<int>(connection, $"SELECT todoscale_ensure_archive_months('todos_archived', '{month:yyyy-MM-dd}', 0)"));
        var refused = await Assert.ThrowsAsync<PostgresException>(() => Sql.ScalarAsync<int>(connection, "SELECT todoscale_ensure_archive_months('todos_active', now()::date, 0)"));
        Assert.Equal(PostgresErrorCodes.InvalidParameterValue, refused.SqlState);
    }
}
