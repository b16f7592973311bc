namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// A database engine the data tests run against, started for real: one PostgreSQL (<see cref="PostgresServer"/>) or
/// a Citus cluster of a coordinator and workers (<see cref="CitusCluster"/>). Connection strings are the
/// coordinator's on Citus: the services cannot tell the two apart, and neither can a test written against this.
/// </summary>
public interface IDatabaseEngine
{
    /// <summary>"postgres" or "citus".</summary>
    string Engine { get; }

    /// <summary>
    /// How many units a fresh todos_active (and ai_interactions) is worked and measured in: 16 hash partitions on
    /// one PostgreSQL (migrate's default), on Citus the shards of the one distributed table (the cluster's
    /// citus.shard_count).
    /// </summary>
    int ActiveUnits { get; }

    /// <summary>
    /// Whether the tenant tables' row-level security is forced (binds their owner too): on one PostgreSQL, yes; on
    /// Citus enabled but not forced, because Citus' online shard moves replicate as a member of the owner (V16).
    /// </summary>
    bool ForcesRowSecurity { get; }

    /// <summary>A superuser connection string to the given database (on Citus: on the coordinator).</summary>
    string ConnectionString(string database = "postgres");

    /// <summary>A new empty database (on Citus: on every node, with the cluster formed in it).</summary>
    Task<string> CreateDatabaseAsync(string hint);

    /// <summary>The fresh database of one test class with the full schema applied by the real `migrate`.</summary>
    Task<string> MigratedDatabaseForAsync(Type testClass);

    /// <summary>A fresh migrated database of its own.</summary>
    Task<string> FreshMigratedDatabaseAsync(string hint);

    /// <summary>Something a whole test class shares (e.g. seeded data), made once on first use.</summary>
    Task<T> SharedForAsync<T>(Type testClass, Func<Task<T>> create);
}
