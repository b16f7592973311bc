using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Archiving;

/// <summary>The archiver worker (`serve`) inside the started AppHost.</summary>
[Collection(AppHostCollection.Name)]
public sealed class ArchiverServiceTests(AppHostFixture fixture)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    private DistributedApplication App => fixture.App;

    private static Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql) => Sql.ScalarAsync<T>(connection, sql);

    [Fact]
    public async Task The_run_archive_now_command_makes_the_archiver_run_a_pass()
    {
        await using var primary = new NpgsqlConnection(await App.GetConnectionStringAsync("todos"));
        await primary.OpenAsync();
        var user = Guid.CreateVersion7();
        var id = Guid.CreateVersion7();
        await using (var insert = new NpgsqlCommand(
            "INSERT INTO todos_active (id, user_id, title, status, completed_at) VALUES ($1, $2, 'long done', 'done', now() - interval '90 days')", primary)
            { Parameters = { new() { Value = id }, new() { Value = user } } })
        {
            await insert.ExecuteNonQueryAsync();
        }

        var result = await App.Services.GetRequiredService<ResourceCommandService>().ExecuteCommandAsync("archiver", "run-archive");
        Assert.True(result.Success, result.Message);

        using var cts = new CancellationTokenSource(Timeout);
        while (await ScalarAsync<long>(primary, $"SELECT count(*) FROM todos_archived WHERE id = '{id}'") == 0)
        {
            await Task.Delay(100, cts.Token);
        }

        Assert.Equal(0L, await ScalarAsync<long>(primary, $"SELECT count(*) FROM todos_active WHERE id = '{id}'"));
        while (await ScalarAsync<long>(primary, "SELECT count(*) FROM audit_log WHERE action = 'archive.pass' AND actor = 'run-now'") == 0)
        {
            await Task.Delay(100, cts.Token);
        }
    }
}
