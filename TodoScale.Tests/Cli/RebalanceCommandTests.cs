using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Cli;

/// <summary>`partitions rebalance` on one PostgreSQL: refused, naming what grows a single server, with nothing changed.</summary>
[Collection(PostgresCollection.Name)]
public sealed class RebalanceCommandTests(PostgresServer server)
{
    [Fact]
    public async Task Rebalance_on_one_postgresql_is_refused_with_partitions_split_named()
    {
        var connectionString = await server.MigratedDatabaseForAsync(GetType());
        var (exitCode, output) = await OperatorCli.RunAsync(["partitions", "rebalance", "--add-worker", "127.0.0.1:5999"], connectionString);

        Assert.Equal(1, exitCode);
        Assert.Contains("one PostgreSQL", output, StringComparison.Ordinal);
        Assert.Contains("partitions split --to N", output, StringComparison.Ordinal);
        Assert.Equal(16L, await Sql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM pg_inherits WHERE inhparent = 'todos_active'::regclass"));
    }
}
