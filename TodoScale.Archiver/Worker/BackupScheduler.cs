using Microsoft.Extensions.Options;
using TodoScale.Archiver.Backups;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data;

namespace TodoScale.Archiver.Worker;

/// <summary>
/// The worker's backups (`serve`), where process mode's AppHost set pgBackRest up (Backup:Config exists): every
/// Backup:CheckEvery the repository is read (the backup gauges) and a backup taken when one is due: a full when
/// the newest full is Backup:FullEvery old (or there is none: at the first start), else a differential when the
/// newest backup is Backup:DiffEvery old. The ages come from the repository, so a restart keeps the rhythm.
/// </summary>
public sealed partial class BackupScheduler(
    [FromKeyedServices(ArchiverDataSource.OwnerKey)] Npgsql.NpgsqlDataSource owner,
    IConfiguration configuration,
    IOptions<BackupOptions> options,
    BackupMetrics metrics,
    TimeProvider clock,
    ILogger<BackupScheduler> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var settings = options.Value;
        if (!File.Exists(settings.ConfigFullPath))
        {
            LogNotSetUp(logger, settings.ConfigFullPath);
            return;
        }

        var connectionString = configuration.GetConnectionString(ConnectionNames.Todos)!;
        var service = new BackupService(PgBackRest.For(settings, connectionString), owner, connectionString);
        using var timer = new PeriodicTimer(settings.CheckEvery, clock);
        do
        {
            try
            {
                var inventory = await service.Tool.InfoAsync(stoppingToken);
                metrics.Observe(State(inventory, service.Tool));
                if (settings.Schedule && Due(inventory, clock.GetUtcNow(), settings) is { } type)
                {
                    LogStarting(logger, type);
                    try
                    {
                        var backup = await service.RunAsync(type, "system", "schedule", null, stoppingToken);
                        metrics.Ran(type, ok: true);
                        LogDone(logger, backup.Type, backup.Label, backup.Duration.TotalSeconds, backup.RepositoryDeltaBytes);
                        metrics.Observe(State(await service.Tool.InfoAsync(stoppingToken), service.Tool));
                    }
                    catch (BackupException e)
                    {
                        metrics.Ran(type, ok: false);
                        LogFailed(logger, $"the scheduled {type} backup", e);
                    }
                }
            }
            catch (Exception e) when (e is BackupException or Npgsql.NpgsqlException or TimeoutException or IOException)
            {
                LogFailed(logger, "reading the backup repository", e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    /// <summary>The backup due now, or null: a full when the newest full is FullEvery old or missing, else a diff when the newest backup is DiffEvery old.</summary>
    public static string? Due(BackupInventory inventory, DateTimeOffset now, BackupOptions options)
    {
        var newestFull = inventory.Backups.Where(b => b.Type == "full").Select(b => (DateTimeOffset?)b.Stop).Max();
        if (newestFull is null || now - newestFull >= options.FullEvery)
        {
            return "full";
        }

        var newest = inventory.Backups.Max(b => b.Stop);
        return now - newest >= options.DiffEvery ? "diff" : null;
    }

    private static BackupState State(BackupInventory inventory, PgBackRest tool)
    {
        var newest = inventory.Backups.GroupBy(b => b.Type)
            .ToDictionary(g => g.Key, g => g.OrderBy(b => b.Stop).Select(b => (b.Stop, b.Duration)).Last(), StringComparer.Ordinal);
        return new BackupState(newest, inventory.RecoverableFrom, tool.RepositoryBytes());
    }

    [LoggerMessage(LogLevel.Information, "Backups are not set up here (no {Config}): process mode's AppHost sets pgBackRest up; container mode and Citus do not offer backups")]
    private static partial void LogNotSetUp(ILogger logger, string config);

    [LoggerMessage(LogLevel.Information, "A {Type} backup is due: starting it")]
    private static partial void LogStarting(ILogger logger, string type);

    [LoggerMessage(LogLevel.Information, "{Type} backup {Label} done in {Seconds:0.0} s, {Bytes} bytes added to the repository")]
    private static partial void LogDone(ILogger logger, string type, string label, double seconds, long bytes);

    [LoggerMessage(LogLevel.Error, "{What} failed")]
    private static partial void LogFailed(ILogger logger, string what, Exception exception);
}
