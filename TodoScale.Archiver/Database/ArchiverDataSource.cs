using Npgsql;
using TodoScale.Data.Tenancy;

namespace TodoScale.Archiver.Database;

/// <summary>
/// The archiver's connections: the configured login acting as the archiver role (BYPASSRLS) to move rows, or
/// with no role as the login itself, the tables' owner, for DDL (detach, drop, attach, reindex).
/// </summary>
public static class ArchiverDataSource
{
    /// <summary>The service key of the owner's (login role's) data source in `serve`.</summary>
    public const string OwnerKey = "owner";

    public static NpgsqlDataSource Create(string connectionString, string? role)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString).ActAs(role);
        builder.ConnectionStringBuilder.ApplicationName ??= "todoscale-archiver";
        return builder.Build();
    }

    /// <summary>
    /// Whether the role may SET session_replication_role (superuser, or the grant of migration V7), so a batch can
    /// run without per-row triggers. It may not on a server where the migrating role could not grant it.
    /// </summary>
    public static async Task<bool> MaySkipRowTriggersAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT has_parameter_privilege('session_replication_role', 'SET')", connection);
        return (bool)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
