using System.Data.Common;
using EvolveDb;
using EvolveDb.Configuration;
using Npgsql;

namespace TodoScale.Data;

/// <summary>
/// Applies TodoScale's embedded SQL migrations (Migrations/V*__*.sql) to a database, in order, with Evolve.
/// Idempotent: a current database is left as it is. Evolve checksums every applied script and stops with an
/// error if one was edited after it ran, and holds an advisory lock so two concurrent runs cannot interleave.
/// </summary>
public sealed class SchemaMigrator(string connectionString, Action<string> log)
{
    public const string HistorySchema = "public";
    public const string HistoryTable = "schema_history";

    private static readonly string MigrationsPrefix = $"{typeof(SchemaMigrator).Namespace}.Migrations";

    /// <summary>Applies every pending migration and returns how many ran.</summary>
    public MigrationResult Migrate()
    {
        using var connection = new NpgsqlConnection(connectionString);
        var evolve = Create(connection);
        evolve.Migrate();
        return new MigrationResult(evolve.NbMigration, [.. evolve.AppliedMigrations], evolve.TotalTimeElapsedInMs);
    }

    private Evolve Create(DbConnection connection) => new(connection, log)
    {
        EmbeddedResourceAssemblies = [typeof(SchemaMigrator).Assembly],
        EmbeddedResourceFilters = [MigrationsPrefix],
        MetadataTableSchema = HistorySchema,
        MetadataTableName = HistoryTable,
        IsEraseDisabled = true,
        MustEraseOnValidationError = false,
        EnableClusterMode = true,
        TransactionMode = TransactionKind.CommitEach,
        CommandTimeout = 600,
    };
}

public sealed record MigrationResult(int Applied, IReadOnlyList<string> Names, long ElapsedMilliseconds);
