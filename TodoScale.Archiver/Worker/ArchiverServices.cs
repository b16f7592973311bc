using Microsoft.Extensions.Options;
using Npgsql;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data;
using TodoScale.Data.Tenancy;

namespace TodoScale.Archiver.Worker;

/// <summary>The worker's services (`serve`), as the API's AddApplicationServices wires the API's.</summary>
public static class ArchiverServices
{
    /// <summary>
    /// The two data sources (rows move as the archiver role, the keyed owner's runs DDL), the settings validated at
    /// start, the archiver, cold storage, index upkeep and their schedule, and the partition gauges.
    /// </summary>
    public static IHostApplicationBuilder AddArchiverServices(this IHostApplicationBuilder builder)
    {
        var role = builder.Configuration.GetSection(ArchiveOptions.Section)[nameof(ArchiveOptions.Role)] ?? new ArchiveOptions().Role;
        builder.AddNpgsqlDataSource(ConnectionNames.Todos, configureDataSourceBuilder: b => b.ActAs(role));
        builder.Services.AddKeyedSingleton(ArchiverDataSource.OwnerKey, (_, _) =>
            ArchiverDataSource.Create(builder.Configuration.GetConnectionString(ConnectionNames.Todos)!, role: null));

        builder.Services.AddOptions<ArchiveOptions>().BindConfiguration(ArchiveOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<MaintenanceOptions>().BindConfiguration(MaintenanceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ArchiveMetrics>();
        builder.Services.AddSingleton<IndexMetrics>();

        builder.Services.AddSingleton(sp => new TodoArchiver(
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<IOptions<ArchiveOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ArchiveMetrics>()));
        builder.Services.AddSingleton(sp => new ColdStore(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<MaintenanceOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ArchiveMetrics>()));
        builder.Services.AddSingleton(sp => new IndexMaintenance(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<MaintenanceOptions>>().Value));
        builder.Services.AddSingleton(sp => new Upkeep(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<ArchiveOptions>>().Value,
            sp.GetRequiredService<ColdStore>(), sp.GetRequiredService<IndexMaintenance>(), sp.GetRequiredService<TimeProvider>()));

        builder.Services.AddOptions<BackupOptions>().BindConfiguration(BackupOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton<BackupMetrics>();
        builder.Services.AddHostedService<BackupScheduler>();

        builder.Services.AddSingleton<ArchiveScheduler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ArchiveScheduler>());
        builder.Services.AddHostedService<PartitionStatsCollector>();
        return builder;
    }
}
