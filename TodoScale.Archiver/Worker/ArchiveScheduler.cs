using Microsoft.Extensions.Options;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data.Partitioning;

namespace TodoScale.Archiver.Worker;

/// <summary>
/// The worker's schedule (`serve`): upkeep at start (archive months made ahead, months past retention to cold
/// storage); a todo pass every day when the UTC window opens, cut off when it closes, followed by upkeep (so a
/// month is exported the day it passes retention); the AI-interaction pass and the bloat-driven reindex once a
/// week (<see cref="MaintenanceOptions.ReindexEvery"/>); and a pass at once when an operator asks
/// (POST /archive/run, the "Run archive now" button on the Aspire dashboard), whatever the window.
/// </summary>
public sealed partial class ArchiveScheduler(
    TodoArchiver archiver,
    Upkeep upkeep,
    [FromKeyedServices(ArchiverDataSource.OwnerKey)] Npgsql.NpgsqlDataSource owner,
    ArchiveMetrics metrics,
    IOptions<MaintenanceOptions> maintenance,
    IOptions<ArchiveOptions> options,
    TimeProvider clock,
    ILogger<ArchiveScheduler> logger) : BackgroundService
{
    private static readonly TimeSpan AiInterval = TimeSpan.FromDays(7);
    private readonly SemaphoreSlim _runNow = new(0, 1);
    private DateTimeOffset _lastAiPass = DateTimeOffset.MinValue;

    /// <summary>Asks for a pass now; a request while one is already waiting is the same request.</summary>
    public bool RunNow()
    {
        try
        {
            _runNow.Release();
            return true;
        }
        catch (SemaphoreFullException)
        {
            return false;
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        await RestoreLastSuccessAsync(stoppingToken);
        await UpkeepAsync(reindex: false, stoppingToken);
        while (!stoppingToken.IsCancellationRequested)
        {
            var now = clock.GetUtcNow();
            var next = NextWindowStart(now, options.Value);
            LogNextPass(logger, next);
            var manual = await WaitForWindowOrRequestAsync(next - now, stoppingToken);
            if (stoppingToken.IsCancellationRequested)
            {
                break;
            }

            using var window = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
            var length = WindowLength(options.Value);
            if (!manual && length.HasValue)
            {
                window.CancelAfter(length.Value);
            }

            await RunPassAsync(manual, window.Token);
            await UpkeepAsync(reindex: null, stoppingToken);
        }
    }

    /// <summary>True when an operator asked for a pass before the window opened.</summary>
    private async Task<bool> WaitForWindowOrRequestAsync(TimeSpan untilWindow, CancellationToken stoppingToken)
    {
        using var waiting = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        var request = _runNow.WaitAsync(waiting.Token);
        var window = Task.Delay(untilWindow, clock, waiting.Token);
        await Task.WhenAny(request, window);
        await waiting.CancelAsync();
        try
        {
            await Task.WhenAll(request, window);
        }
        catch (OperationCanceledException)
        {
            // The one that did not finish first was cancelled.
        }

        return request.IsCompletedSuccessfully;
    }

    /// <summary>The last successful passes before this start, so the staleness alert measures from them, not from the restart.</summary>
    private async Task RestoreLastSuccessAsync(CancellationToken cancellationToken)
    {
        try
        {
            foreach (var (table, target) in new[] { ("todos", "todos_active"), ("ai_interactions", "ai_interactions") })
            {
                if (await AuditLog.LastAsync(owner, "archive.pass", target, cancellationToken) is { } at)
                {
                    metrics.RestoreLastSuccess(table, at);
                }
            }
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            LogFailed(logger, "reading the last archive pass", e);
        }
    }

    /// <summary>Upkeep; <paramref name="reindex"/> null: reindex when the last one is older than ReindexEvery.</summary>
    private async Task UpkeepAsync(bool? reindex, CancellationToken cancellationToken)
    {
        try
        {
            var due = reindex ?? await upkeep.ReindexDueAsync(maintenance.Value.ReindexEvery, cancellationToken);
            var result = await upkeep.RunAsync(due, "system", "schedule", null, cancellationToken);
            LogUpkeep(logger, result.MonthsCreated, result.Exported.Count(e => !e.AlreadyCold), result.Failed.Count, result.Reindexed.Count);
            foreach (var failure in result.Failed)
            {
                LogColdFailed(logger, ArchiveMonths.Format(failure.Month), failure.Error);
            }
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException or IOException)
        {
            LogFailed(logger, "upkeep", e);
        }
    }

    private async Task RunPassAsync(bool manual, CancellationToken cancellationToken)
    {
        var actor = manual ? "run-now" : "schedule";
        try
        {
            var result = await archiver.RunPassAsync(null, cancellationToken);
            await archiver.AuditAsync("system", actor, result, null, CancellationToken.None);
            LogPass(logger, "todos", result.RowsMoved, result.Elapsed.TotalSeconds);
            if (manual || clock.GetUtcNow() - _lastAiPass >= AiInterval)
            {
                var ai = await archiver.RunAiPassAsync(null, cancellationToken);
                await archiver.AuditAsync("system", actor, ai, null, CancellationToken.None, "ai_interactions");
                _lastAiPass = clock.GetUtcNow();
                LogPass(logger, "ai_interactions", ai.RowsMoved, ai.Elapsed.TotalSeconds);
            }
        }
        catch (OperationCanceledException) when (!manual && cancellationToken.IsCancellationRequested)
        {
            LogWindowClosed(logger);
        }
        catch (Exception e) when (e is Npgsql.NpgsqlException or TimeoutException)
        {
            LogFailed(logger, "archive pass", e);
            try
            {
                await archiver.AuditAsync("system", actor, null, e, CancellationToken.None);
            }
            catch (Npgsql.NpgsqlException)
            {
                // The database that failed the pass may refuse the audit entry too.
            }
        }
    }

    /// <summary>The next time the daily window opens (now, when it is open now and no pass ran in it yet).</summary>
    public static DateTimeOffset NextWindowStart(DateTimeOffset now, ArchiveOptions options)
    {
        var today = new DateTimeOffset(now.UtcDateTime.Date, TimeSpan.Zero);
        var start = today + options.WindowStart.ToTimeSpan();
        return start > now ? start : start.AddDays(1);
    }

    private static TimeSpan? WindowLength(ArchiveOptions options)
    {
        if (options.WindowStart == options.WindowEnd)
        {
            return null;
        }

        var length = options.WindowEnd.ToTimeSpan() - options.WindowStart.ToTimeSpan();
        return length > TimeSpan.Zero ? length : length + TimeSpan.FromDays(1);
    }

    [LoggerMessage(LogLevel.Information, "Next scheduled archive pass at {Next:u}")]
    private static partial void LogNextPass(ILogger logger, DateTimeOffset next);

    [LoggerMessage(LogLevel.Information, "Upkeep: {Created} archive month(s) created, {Exported} month(s) to cold storage, {Failed} failed, {Reindexed} index(es) rebuilt")]
    private static partial void LogUpkeep(ILogger logger, int created, int exported, int failed, int reindexed);

    [LoggerMessage(LogLevel.Error, "Retention could not move {Month} to cold storage (its partitions are kept): {Error}")]
    private static partial void LogColdFailed(ILogger logger, string month, string error);

    [LoggerMessage(LogLevel.Information, "Archive pass over {Table}: {Rows} rows moved in {Seconds:0.0} s")]
    private static partial void LogPass(ILogger logger, string table, long rows, double seconds);

    [LoggerMessage(LogLevel.Warning, "The archive window closed during a pass; the next pass continues where it stopped")]
    private static partial void LogWindowClosed(ILogger logger);

    [LoggerMessage(LogLevel.Error, "{What} failed")]
    private static partial void LogFailed(ILogger logger, string what, Exception exception);
}
