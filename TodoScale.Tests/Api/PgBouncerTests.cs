using Aspire.Hosting.Testing;
using Npgsql;
using TodoScale.Tests.Infrastructure;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Api;

/// <summary>
/// The API behind a real PgBouncer 1.18 in transaction mode (--Infra:Pooler=pgbouncer) with two server connections:
/// every API transaction runs on a server connection other users' transactions ran on a moment before, and no
/// tenant ever sees another's rows.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(PooledAppHostCollection.Name)]
public sealed class PgBouncerTests(PooledAppHostFixture fixture)
{
    [EngineFact]
    public async Task Many_users_at_once_through_two_shared_server_connections_each_see_only_their_own_todos()
    {
        var primary = (await fixture.App.GetConnectionStringAsync("todos"))!;
        const int users = 24;
        var clients = Enumerable.Range(0, users).Select(_ => ApiClient.ForNewUser(fixture)).ToList();
        try
        {
            // Each user writes and reads at the same time as every other: creates, lists (the page query, planned on
            // every call: nothing is prepared through the pooler), reads its own todo and tries another's.
            var created = new Guid[users][];
            var peak = 0L;
            using var sampling = new CancellationTokenSource();
            var sampler = Task.Run(async () =>
            {
                await using var db = new NpgsqlConnection(primary);
                await db.OpenAsync();
                while (!sampling.IsCancellationRequested)
                {
                    var now = await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'todoscale_app' AND backend_type = 'client backend'");
                    peak = Math.Max(peak, now);
                    await Task.Delay(20); // a sample every 20 ms, not a wait for anything
                }
            });

            await Task.WhenAll(Enumerable.Range(0, users).Select(async i =>
            {
                var me = clients[i];
                var other = clients[(i + 1) % users];
                var mine = new List<Guid>();
                for (var round = 0; round < 6; round++)
                {
                    mine.Add(await me.CreateTodoAsync($"user {i} todo {round}"));
                    var listed = (await me.GetAsync("/api/todos?limit=100")).Is(OK).ItemIds;
                    Assert.True(listed.ToHashSet().SetEquals(mine), $"user {i} listed {listed.Count} todos, wrote {mine.Count}");
                    (await me.GetAsync($"/api/todos/{mine[^1]}")).Is(OK);
                    if (created[(i + 1) % users] is { Length: > 0 } theirs)
                    {
                        (await me.GetAsync($"/api/todos/{theirs[0]}")).IsProblem(NotFound);
                    }
                }

                created[i] = [.. mine];
            }));
            await sampling.CancelAsync();
            await sampler;

            // The pooler held the API to its two server connections, whatever the API's own pool opened.
            Assert.InRange(peak, 1, PooledAppHostFixture.PoolSize);
            for (var i = 0; i < users; i++)
            {
                Assert.Equal(created[i].ToHashSet(), (await clients[i].GetAsync("/api/todos?limit=100")).Is(OK).ItemIds.ToHashSet());
            }
        }
        finally
        {
            clients.ForEach(c => c.Dispose());
        }
    }

    [EngineFact]
    public async Task A_server_connection_carries_no_tenant_from_one_transaction_to_the_next_and_the_pooler_admits_only_the_apis_role()
    {
        using var owner = ApiClient.ForNewUser(fixture);
        await owner.CreateTodoAsync("the owner's");
        var pooled = (await fixture.App.GetConnectionStringAsync("todos-pooler"))!;

        // The pooled login is the API's role itself, which row-level security applies to.
        await using (var connection = new NpgsqlConnection(pooled))
        {
            await connection.OpenAsync();
            Assert.Equal("todoscale_app", await Sql.ScalarAsync<string>(connection, "SELECT current_user"));
            Assert.False(await Sql.ScalarAsync<bool>(connection, "SELECT rolbypassrls OR rolsuper FROM pg_roles WHERE rolname = current_user"));

            // The owner's transaction sees the owner's row...
            await using var transaction = await connection.BeginTransactionAsync();
            await Sql.ExecuteAsync(connection, $"SET LOCAL app.user_id = '{owner.UserId}'", transaction);
            Assert.Equal(1L, await Sql.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active", transaction));
            await transaction.CommitAsync();
        }

        // ...and then no client, on any of the pool's server connections, inherits that scope: the setting ended with
        // the transaction, and without a tenant the policies show nothing. (A server session that once had the scope
        // keeps the setting as '', which the policies refuse to read as a user: an error, never rows.)
        for (var i = 0; i < 20; i++)
        {
            await using var next = new NpgsqlConnection(pooled);
            await next.OpenAsync();
            Assert.Equal("", await Sql.ScalarAsync<string?>(next, "SELECT coalesce(current_setting('app.user_id', true), '')"));
            try
            {
                Assert.Equal(0L, await Sql.ScalarAsync<long>(next, "SELECT count(*) FROM todos_active"));
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.InvalidTextRepresentation)
            {
            }
        }

        // The superuser cannot come through the pooler (its auth file lists the API's role only), and a client cannot
        // ask for another role: PgBouncer refuses the startup option that would carry it.
        var asSuperuser = new NpgsqlConnectionStringBuilder(await fixture.App.GetConnectionStringAsync("todos"))
        {
            Port = new NpgsqlConnectionStringBuilder(pooled).Port,
            Pooling = false,
        };
        var refused = await Assert.ThrowsAnyAsync<NpgsqlException>(() => Sql.ScalarAsync<int>(asSuperuser.ConnectionString, "SELECT 1"));
        Assert.Contains("SASL authentication failed", refused.Message, StringComparison.Ordinal);
        var switching = new NpgsqlConnectionStringBuilder(pooled) { Options = "-c role=todoscale_archiver", Pooling = false };
        var unsupported = await Assert.ThrowsAnyAsync<NpgsqlException>(() => Sql.ScalarAsync<int>(switching.ConnectionString, "SELECT 1"));
        Assert.Contains("unsupported startup parameter", unsupported.Message, StringComparison.OrdinalIgnoreCase);
    }
}
