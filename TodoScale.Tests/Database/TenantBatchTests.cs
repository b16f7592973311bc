using Npgsql;
using TodoScale.Api.Contracts;
using TodoScale.Api.Queries;
using TodoScale.Data.Tenancy;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Database;

/// <summary>
/// The API's list read as the server sees it, on both engines: the page in a <see cref="TenantBatch"/> costs one round
/// trip (ReadyForQuery counted on the wire by a relay in front of the server or coordinator), shows only its tenant's
/// rows, and leaves the connection as it found it, also when a statement in it fails.
/// </summary>
public abstract class TenantBatchTests(IDatabaseEngine engine)
{
    private sealed record Tenants(string ConnectionString, Guid A, Guid B);

    private Task<Tenants> SeededAsync() => engine.SharedForAsync(GetType(), async () =>
    {
        var connectionString = await engine.MigratedDatabaseForAsync(GetType());
        var a = Guid.CreateVersion7();
        var b = Guid.CreateVersion7();
        await Sql.ExecuteAsync(connectionString, $"""
            INSERT INTO todos_active (user_id, id, title, status)
            SELECT '{a}', gen_random_uuid(), 'a ' || i, 'todo' FROM generate_series(1, 7) i;
            INSERT INTO todos_active (user_id, id, title, status)
            SELECT '{b}', gen_random_uuid(), 'b ' || i, 'todo' FROM generate_series(1, 5) i;
            """);
        return new Tenants(connectionString, a, b);
    });

    private static TodoListQuery FirstPage(int limit = 50)
    {
        var validation = new Validation();
        return TodoListQuery.Parse("todo,in_progress", null, null, null, null, null, null, limit, null, validation)
               ?? throw new InvalidOperationException(string.Join("; ", validation.Errors.SelectMany(e => e.Value)));
    }

    [EngineFact]
    public async Task The_first_page_costs_one_round_trip_and_shows_only_its_tenants_rows()
    {
        var (connectionString, a, _) = await SeededAsync();
        await using var relay = WireRelay.To(connectionString);
        await using var connection = await Sql.OpenAsync(relay.Through(Roles.As(connectionString, Roles.App)));

        // Twice: on a connection that has not run the page yet and on one that has.
        for (var round = 0; round < 2; round++)
        {
            var before = relay.ReadyForQuery;
            Page<TodoDto> page;
            await using (var batch = new TenantBatch(connection, a))
            {
                page = await FirstPage().ExecuteAsync(batch, CancellationToken.None);
            }

            Assert.Equal(1, relay.ReadyForQuery - before);
            Assert.Equal(7, page.Items.Count);
            Assert.All(page.Items, t => Assert.StartsWith("a ", t.Title, StringComparison.Ordinal));
        }

        await AssertLeftCleanAsync(connection);
    }

    [EngineFact]
    public async Task A_statement_that_fails_in_the_batch_leaves_no_transaction_and_no_tenant_on_the_pooled_connection()
    {
        var (connectionString, a, b) = await SeededAsync();
        // One physical connection, reused: what the failed batch leaves is what the next user of the pool gets.
        var pooled = new NpgsqlConnectionStringBuilder(Roles.As(connectionString, Roles.App)) { MaxPoolSize = 1, ApplicationName = $"tenant-batch-{Guid.NewGuid():N}" }.ConnectionString;
        int backend;
        await using (var connection = await Sql.OpenAsync(pooled))
        {
            backend = connection.ProcessID;
            await using var batch = new TenantBatch(connection, a);
            batch.Add("SELECT count(*) FROM todos_active");
            batch.Add("SELECT 1 / 0");
            var error = await Assert.ThrowsAsync<PostgresException>(async () =>
            {
                await using var reader = await batch.ExecuteReaderAsync();
                while (await reader.NextResultAsync())
                {
                }
            });
            Assert.Equal(PostgresErrorCodes.DivisionByZero, error.SqlState);
        }

        await using (var again = await Sql.OpenAsync(pooled))
        {
            Assert.Equal(backend, again.ProcessID);
            await AssertLeftCleanAsync(again);

            // And the next tenant on it sees its own rows only.
            await using var batch = new TenantBatch(again, b);
            var page = await FirstPage().ExecuteAsync(batch, CancellationToken.None);
            Assert.Equal(5, page.Items.Count);
            Assert.All(page.Items, t => Assert.StartsWith("b ", t.Title, StringComparison.Ordinal));
        }

        NpgsqlConnection.ClearPool(new NpgsqlConnection(pooled));
    }

    [EngineFact]
    public async Task A_batch_that_ends_early_still_commits_last_and_a_page_of_limit_n_reads_n_plus_one()
    {
        var (connectionString, a, _) = await SeededAsync();
        await using var connection = await Sql.OpenAsync(Roles.As(connectionString, Roles.App));
        await using (var batch = new TenantBatch(connection, a))
        {
            var page = await FirstPage(limit: 3).ExecuteAsync(batch, CancellationToken.None);
            Assert.Equal(3, page.Items.Count);
            Assert.NotNull(page.NextCursor);
        }

        await AssertLeftCleanAsync(connection);
    }

    /// <summary>
    /// No transaction open (a SAVEPOINT is refused outside one), no tenant (a read without one fails closed: an error
    /// or no rows), plan_cache_mode back to the server's.
    /// </summary>
    private static async Task AssertLeftCleanAsync(NpgsqlConnection connection)
    {
        var outside = await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecuteAsync(connection, "SAVEPOINT left_open"));
        Assert.Equal(PostgresErrorCodes.NoActiveSqlTransaction, outside.SqlState);
        Assert.Equal("", await Sql.ScalarAsync<string>(connection, "SELECT coalesce(current_setting('app.user_id', true), '')"));
        Assert.NotEqual("force_generic_plan", await Sql.ScalarAsync<string>(connection, "SHOW plan_cache_mode"));
        try
        {
            Assert.Equal(0L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active"));
        }
        catch (PostgresException)
        {
            // Failed closed by raising: the policy's own choice.
        }
    }
}

[Collection(PostgresCollection.Name)]
public sealed class TenantBatchTestsOnPostgres(PostgresServer server) : TenantBatchTests(server);

[Collection(CitusCollection.Name)]
[NeedsCitus]
public sealed class TenantBatchTestsOnCitus(CitusCluster cluster) : TenantBatchTests(cluster);
