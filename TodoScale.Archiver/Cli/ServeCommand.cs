using System.CommandLine;
using Microsoft.Extensions.Options;
using Npgsql;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Partitions;
using TodoScale.Data;
using TodoScale.Data.Tenancy;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Archiver.Worker;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `serve`: the long-running worker: the archive and upkeep schedule, the partition gauges, POST /archive/run,
/// /metrics and /health. Rows move as the archiver role; DDL (detach, drop, attach, reindex) runs as the login.
/// </summary>
internal static class ServeCommand
{

    public static Command Create()
    {
        var command = new Command("serve", "Run the long-running worker (schedules, /metrics, /health). The default verb.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction((parseResult, cancellationToken) => RunAsync([.. parseResult.UnmatchedTokens], cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string[] hostArgs, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateBuilder(hostArgs);
        builder.AddServiceDefaults();
        var role = builder.Configuration.GetSection(ArchiveOptions.Section)[nameof(ArchiveOptions.Role)] ?? new ArchiveOptions().Role;
        builder.AddNpgsqlDataSource(ConnectionNames.Todos, configureDataSourceBuilder: b => b.ActAs(role));

        builder.Services.AddOptions<ArchiveOptions>().BindConfiguration(ArchiveOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<MaintenanceOptions>().BindConfiguration(MaintenanceOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddKeyedSingleton(ArchiverDataSource.OwnerKey, (sp, _) =>
            ArchiverDataSource.Create(builder.Configuration.GetConnectionString(ConnectionNames.Todos)!, role: null));
        builder.Services.AddSingleton(sp => new ColdStore(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<MaintenanceOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ArchiveMetrics>()));
        builder.Services.AddSingleton(sp => new IndexMaintenance(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<MaintenanceOptions>>().Value));
        builder.Services.AddSingleton(sp => new Upkeep(
            sp.GetRequiredKeyedService<NpgsqlDataSource>(ArchiverDataSource.OwnerKey), sp.GetRequiredService<IOptions<ArchiveOptions>>().Value,
            sp.GetRequiredService<ColdStore>(), sp.GetRequiredService<IndexMaintenance>(), sp.GetRequiredService<TimeProvider>()));
        builder.Services.AddHostedService<PartitionStatsCollector>();
        builder.Services.AddSingleton<ArchiveMetrics>();
        builder.Services.AddSingleton(sp => new TodoArchiver(
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<IOptions<ArchiveOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ArchiveMetrics>()));
        builder.Services.AddSingleton<ArchiveScheduler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ArchiveScheduler>());

        var app = builder.Build();
        app.MapDefaultEndpoints();
        // Internal (the archiver is not exposed to users): the AppHost's "Run archive now" command posts here.
        app.MapPost("/archive/run", (ArchiveScheduler scheduler) =>
            TypedResults.Accepted("/archive/run", new { queued = scheduler.RunNow() }));

        await app.RunAsync(cancellationToken);
        return ExitCodes.Success;
    }
}
