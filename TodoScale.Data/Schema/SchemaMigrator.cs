using System.Diagnostics;
using System.Globalization;
using EvolveDb;
using EvolveDb.Configuration;
using Npgsql;
using TodoScale.Data.Locking;
using TodoScale.Data.Tenancy;

namespace TodoScale.Data.Schema;

/// <summary>
/// Applies TodoScale's embedded SQL migrations (Migrations/V*__*.sql) to a database, in order, with Evolve.
/// Idempotent: a current database is left as it is. Evolve checksums every applied script and stops with an
/// error if one was edited after it ran. Only one migrate runs at a time (an advisory lock, waited for at most
/// <see cref="SchemaOptions.LockTimeout"/>), and every table lock a script needs is bounded by the same timeout
/// (lock_timeout), so a migrate never queues behind a long transaction while blocking the API behind itself.
/// </summary>
public sealed class SchemaMigrator(string connectionString, SchemaOptions options, Action<string> log)
{
    public const string HistorySchema = "public";
    public const string HistoryTable = "schema_history";

    /// <summary>The advisory lock key held while a migrate runs ("TodoScal" in ASCII).</summary>
    public const long MigrateLockKey = 0x546F646F5363616C;

    private static readonly string MigrationsPrefix = $"{typeof(ConnectionNames).Namespace}.Migrations";

    /// <summary>Applies every pending migration and returns what ran.</summary>
    /// <exception cref="SchemaLockException">another migrate held the lock for longer than the lock timeout.</exception>
    public async Task<MigrationResult> MigrateAsync(CancellationToken cancellationToken = default)
    {
        var stopwatch = Stopwatch.StartNew();
        var target = WithLockTimeout(connectionString, options.LockTimeout);
        await using var lockSource = NpgsqlDataSource.Create(target);
        await using var migrateLock = await SessionLock.TakeWithinAsync(lockSource, MigrateLockKey, options.LockTimeout,
                () => log($"waiting up to {options.LockTimeout} for another migrate to finish..."), TimeProvider.System, cancellationToken)
            ?? throw new SchemaLockException(
                $"another migrate has held the schema lock for more than {options.LockTimeout} (advisory lock {MigrateLockKey}); " +
                "retry when it has finished");
        await using var connection = new NpgsqlConnection(target);
        var evolve = Create(connection);
        evolve.Migrate();

        IReadOnlyList<string> distributed = [];
        await connection.OpenAsync(cancellationToken);
        // A script that added an index ON ONLY a partitioned table left it for here: each partition's built concurrently.
        await PartitionedIndexes.CompleteAsync(connection, log, cancellationToken);
        if (await CitusLayout.IsCitusAsync(connection, cancellationToken))
        {
            distributed = await CitusLayout.ApplyAsync(connection, log, cancellationToken);
        }

        if (options.AppLoginPassword is { Length: > 0 } password)
        {
            await RoleLogin.AllowAsync(connection, "todoscale_app", password, cancellationToken);
            log("todoscale_app may log in (the pooler's login)");
        }

        return new MigrationResult(evolve.NbMigration, [.. evolve.AppliedMigrations], stopwatch.ElapsedMilliseconds, distributed);
    }

    /// <summary>The names of the embedded migrations, in the order they apply.</summary>
    public static IReadOnlyList<string> EmbeddedMigrations() =>
        [.. typeof(SchemaMigrator).Assembly.GetManifestResourceNames()
            .Where(name => name.StartsWith(MigrationsPrefix, StringComparison.Ordinal) && name.EndsWith(".sql", StringComparison.Ordinal))
            .Select(name => name[(MigrationsPrefix.Length + 1)..])
            .OrderBy(name => int.Parse(name[1..name.IndexOf("__", StringComparison.Ordinal)], CultureInfo.InvariantCulture))];

    /// <summary>The text of one embedded migration, before its placeholders are replaced.</summary>
    public static string ReadEmbeddedMigration(string name)
    {
        using var stream = typeof(SchemaMigrator).Assembly.GetManifestResourceStream($"{MigrationsPrefix}.{name}")
            ?? throw new ArgumentException($"no embedded migration {name}", nameof(name));
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    }

    private static string WithLockTimeout(string connectionString, TimeSpan lockTimeout)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var milliseconds = Math.Max(1, (long)lockTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture);
        builder.Options = $"{builder.Options} -c lock_timeout={milliseconds}".Trim();
        return builder.ConnectionString;
    }

    private Evolve Create(NpgsqlConnection connection) => new(connection, log)
    {
        EmbeddedResourceAssemblies = [typeof(SchemaMigrator).Assembly],
        EmbeddedResourceFilters = [MigrationsPrefix],
        MetadataTableSchema = HistorySchema,
        MetadataTableName = HistoryTable,
        Placeholders = new Dictionary<string, string>(options.Placeholders),
        IsEraseDisabled = true,
        MustEraseOnValidationError = false,
        EnableClusterMode = true,
        TransactionMode = TransactionKind.CommitEach,
        CommandTimeout = 3600,
    };
}

/// <param name="Distributed">the tables placed on a Citus cluster by this run (empty on PostgreSQL, and when current).</param>
public sealed record MigrationResult(int Applied, IReadOnlyList<string> Names, long ElapsedMilliseconds, IReadOnlyList<string> Distributed);

/// <summary>Another migrate held the schema lock for longer than the configured lock timeout.</summary>
public sealed class SchemaLockException(string message) : Exception(message);
