using System.Collections.Concurrent;
using Npgsql;
using TodoScale.Data.Schema;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// A real Citus 13 cluster for the tests: a coordinator and two workers, each a throwaway PostgreSQL server of its
/// own (<see cref="PostgresServer"/> with citus preloaded). Every database a test asks for is created on every
/// node with the citus extension, and formed into a cluster there (the coordinator registered, the workers added):
/// Citus keeps its node list per database. Disposal stops the three servers and removes their folders.
/// The cluster keeps 8 shards per distributed table (Citus' default is 32): with the hash and month partitions
/// that is ~360 shards instead of ~1,440 per database, and the same code paths.
/// </summary>
public sealed class CitusCluster : IAsyncLifetime, IDatabaseEngine
{
    private readonly ConcurrentDictionary<Type, Lazy<Task<string>>> _migrated = new();
    private readonly ConcurrentDictionary<Type, Lazy<Task>> _shared = new();
    private readonly List<PostgresServer> _nodes = [];
    private readonly List<PostgresServer> _spares = [];

    /// <summary>Why Citus tests cannot run here, or null when they can.</summary>
    public static string? MissingReason { get; } = FindMissingReason();

    public string Engine => "citus";

    /// <summary>citus.shard_count in <see cref="NodeSettings"/>.</summary>
    public const int ShardCount = 8;

    public int ActiveUnits => ShardCount;

    public bool ForcesRowSecurity => false;

    public PostgresServer Coordinator => _nodes[0];

    public IReadOnlyList<PostgresServer> Workers => _nodes[1..];

    /// <summary>Node settings every Citus node needs here (vendor README): citus preloaded, logical WAL for the
    /// online rebalancer, and no SSL between the nodes. Commits are synchronous, as on a real installation (the test
    /// servers' default is off): a shard move's switch trusts the WAL position a node has written, and an asynchronous
    /// commit can be acknowledged before that (CitusRebalance; `partitions rebalance` refuses such nodes).</summary>
    public static IReadOnlyList<string> NodeSettings { get; } =
    [
        "shared_preload_libraries=citus", "wal_level=logical", "citus.node_conninfo=sslmode=disable",
        $"citus.shard_count={ShardCount}", "max_worker_processes=32", "synchronous_commit=on",
    ];

    public string ConnectionString(string database = "postgres") => Coordinator.ConnectionString(database);

    public async Task InitializeAsync()
    {
        if (MissingReason is not null)
        {
            return;
        }

        for (var i = 0; i < 3; i++)
        {
            var node = new PostgresServer(NodeSettings);
            _nodes.Add(node);
            await node.InitializeAsync();
        }
    }

    /// <summary>Starts one more server, a worker to be (in no database's cluster, nor in later ones), stopped with the cluster.</summary>
    public async Task<PostgresServer> StartWorkerAsync()
    {
        var node = new PostgresServer(NodeSettings);
        _spares.Add(node);
        await node.InitializeAsync();
        return node;
    }

    public async Task<string> CreateDatabaseAsync(string hint)
    {
        if (MissingReason is not null)
        {
            throw new InvalidOperationException(MissingReason);
        }

        var connectionString = await Coordinator.CreateDatabaseAsync(hint);
        var database = new NpgsqlConnectionStringBuilder(connectionString).Database!;
        foreach (var worker in Workers)
        {
            await Sql.ExecuteAsync(worker.ConnectionString(), $"CREATE DATABASE \"{database}\"");
        }

        foreach (var node in _nodes)
        {
            await Sql.ExecuteAsync(node.ConnectionString(database), "CREATE EXTENSION citus");
        }

        await Sql.ExecuteAsync(connectionString, $"SELECT citus_set_coordinator_host('127.0.0.1', {Coordinator.Port})");
        foreach (var worker in Workers)
        {
            await Sql.ExecuteAsync(connectionString, $"SELECT citus_add_node('127.0.0.1', {worker.Port})");
        }

        return connectionString;
    }

    public Task<string> MigratedDatabaseForAsync(Type testClass) =>
        _migrated.GetOrAdd(testClass, type => new Lazy<Task<string>>(() => FreshMigratedDatabaseAsync(type.Name))).Value;

    public async Task<string> FreshMigratedDatabaseAsync(string hint)
    {
        var connectionString = await CreateDatabaseAsync(hint);
        await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync();
        return connectionString;
    }

    public Task<T> SharedForAsync<T>(Type testClass, Func<Task<T>> create) =>
        (Task<T>)_shared.GetOrAdd(testClass, _ => new Lazy<Task>(() => create())).Value;

    public async Task DisposeAsync()
    {
        foreach (var node in _nodes.Concat(_spares))
        {
            await node.DisposeAsync();
        }
    }

    private static string? FindMissingReason()
    {
        var lib = Path.Combine(Path.GetDirectoryName(PostgresServer.BinDirectory)!, "lib", "citus.so");
        return File.Exists(lib)
            ? null
            : $"Citus is not installed ({lib} is missing): ./build.sh test installs it as root (apt package, or built from CITUS_SOURCE)";
    }
}

[CollectionDefinition(Name)]
public sealed class CitusCollection : ICollectionFixture<CitusCluster>
{
    public const string Name = "citus";
}
