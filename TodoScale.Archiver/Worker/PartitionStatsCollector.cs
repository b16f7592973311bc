using Microsoft.Extensions.Options;
using Npgsql;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;

namespace TodoScale.Archiver.Worker;

/// <summary>
/// Reads partition sizes, archive months, the archive backlog, the cold-storage manifests and index usage every
/// <see cref="MaintenanceOptions.StatsInterval"/> and hands them to the gauges of <see cref="ArchiveMetrics"/> and
/// <see cref="IndexMetrics"/>.
/// The partitions come from the catalog each time, so a re-split shows up at the next refresh.
/// </summary>
public sealed partial class PartitionStatsCollector(
    NpgsqlDataSource dataSource,
    IOptions<ArchiveOptions> archive,
    IOptions<MaintenanceOptions> maintenance,
    ColdStore cold,
    ArchiveMetrics metrics,
    IndexMetrics indexes,
    TimeProvider clock,
    ILogger<PartitionStatsCollector> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(maintenance.Value.StatsInterval, clock);
        do
        {
            try
            {
                var snapshot = await PartitionStats.ReadAsync(dataSource, archive.Value, clock.GetUtcNow(), exact: false, stoppingToken);
                metrics.Observe(snapshot, [.. cold.Manifests().Select(m => m.Manifest.Size)]);
                indexes.Observe(await IndexUsageSnapshot.ReadAsync(dataSource, clock.GetUtcNow(), stoppingToken));
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException or IOException or ColdStorageException)
            {
                LogRefreshFailed(logger, e);
            }
        }
        while (await timer.WaitForNextTickAsync(stoppingToken));
    }

    [LoggerMessage(LogLevel.Warning, "Reading partition statistics failed; the gauges keep their last values")]
    private static partial void LogRefreshFailed(ILogger logger, Exception exception);
}
