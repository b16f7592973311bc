using Microsoft.Extensions.Configuration;
using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;

namespace TodoScale.Archiver.Cli;

/// <summary>What the maintenance verbs share: configuration, validated settings and the connections they open.</summary>
internal sealed record OperatorTools(string ConnectionString, ArchiveOptions Archive, MaintenanceOptions Maintenance)
{
    public static OperatorTools Load() => Load(CliConfiguration.Load());

    public static OperatorTools Load(IConfiguration configuration)
    {
        return new OperatorTools(
            configuration.RequirePrimaryConnectionString(),
            configuration.BindOptions<ArchiveOptions>(ArchiveOptions.Section, o => o.Errors()),
            configuration.BindOptions<MaintenanceOptions>(MaintenanceOptions.Section, o => o.Errors()));
    }

    /// <summary>Connections as the login role, the tables' owner: DDL (detach, drop, attach, reindex) needs it.</summary>
    public NpgsqlDataSource OwnerDataSource() => ArchiverDataSource.Create(ConnectionString, role: null);

    /// <summary>Connections acting as the archiver role (reads of every tenant's rows).</summary>
    public NpgsqlDataSource ArchiverRoleDataSource() => ArchiverDataSource.Create(ConnectionString, Archive.Role);
}
