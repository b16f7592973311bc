using Npgsql;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Partitioning;

namespace TodoScale.Archiver.Worker;

/// <summary>A month that retention could not move to cold storage (its partitions are kept).</summary>
public sealed record ColdFailure(DateOnly Month, string Error);

/// <summary>What one round of upkeep did.</summary>
public sealed record UpkeepResult(
    int MonthsCreated,
    IReadOnlyList<ColdExportResult> Exported,
    IReadOnlyList<ColdFailure> Failed,
    IReadOnlyList<IndexBloat> Reindexed,
    string? ReindexSkipped,
    TimeSpan Elapsed,
    IReadOnlyList<ColdCopyState> Copies);

/// <summary>
/// Upkeep (`maintain --once`, and `serve` at start, daily and weekly): archive months made ahead, months past
/// retention exported, verified, detached and dropped (a month that fails keeps its partitions and the others
/// go on), and optionally the bloat-driven reindex. Every step is idempotent: a second run finds nothing to do.
/// </summary>
public sealed class Upkeep(
    NpgsqlDataSource owner, ArchiveOptions archive, ColdStore cold, IndexMaintenance indexes, TimeProvider clock)
{
    /// <summary>
    /// True when no upkeep has rebuilt indexes within <paramref name="every"/>: the last one is read from
    /// audit_log, so a restarted worker keeps the weekly rhythm instead of reindexing at every start.
    /// </summary>
    public async Task<bool> ReindexDueAsync(TimeSpan every, CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            "SELECT max(at) FROM audit_log WHERE action IN ('maintain', 'maintain.failed') AND details ? 'reindex_skipped' AND details->>'reindex_skipped' IS NULL");
        var last = await command.ExecuteScalarAsync(cancellationToken);
        return last is not DateTime at || clock.GetUtcNow() - new DateTimeOffset(at, TimeSpan.Zero) >= every;
    }

    public async Task<UpkeepResult> RunAsync(bool reindex, string actorKind, string actor, IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        var created = await ArchiveMonths.EnsureAsync(owner, clock.GetUtcNow(), archive.Premake, cancellationToken);
        progress?.Report($"{created} archive month(s) created ahead");

        var exported = new List<ColdExportResult>();
        var failed = new List<ColdFailure>();
        foreach (var month in await cold.DueAsync(cancellationToken))
        {
            progress?.Report($"retention: exporting {ArchiveMonths.Format(month)}");
            try
            {
                exported.Add(await cold.ExportAsync(month, drop: true, actorKind, actor, cancellationToken));
            }
            catch (Exception e) when (e is ColdStorageException or NpgsqlException or IOException or InvalidDataException or TimeoutException)
            {
                failed.Add(new ColdFailure(month, Failures.Describe(e)));
            }
        }

        // The copies of every exported month (Maintenance:ColdCopyFolders), sha256 read back; a missing or damaged
        // one is made again from a folder whose files are intact.
        IReadOnlyList<ColdCopyState> copies = [];
        if (cold.CopyFolders.Count > 0)
        {
            progress?.Report("cold storage: checking the copies");
            copies = await cold.CheckCopiesAsync(deep: true, repair: true, cancellationToken);
        }

        IReadOnlyList<IndexBloat> reindexed = [];
        string? skipped = reindex ? await indexes.UnavailableAsync(cancellationToken) : "not due";
        if (skipped is null)
        {
            reindexed = await indexes.ReindexBloatedAsync(progress, cancellationToken);
        }

        var result = new UpkeepResult(created, exported, failed, reindexed, skipped, TimeProvider.System.GetElapsedTime(started), copies);
        await AuditLog.WriteAsync(owner, actorKind, actor, failed.Count == 0 ? "maintain" : "maintain.failed", null, new
        {
            MonthsCreated = created,
            Exported = exported.Select(e => new { e.Manifest.Month, e.Manifest.Rows, e.AlreadyCold }),
            Failed = failed.Select(f => new { Month = ArchiveMonths.Format(f.Month), f.Error }),
            Reindexed = reindexed.Select(r => r.Index),
            ReindexSkipped = skipped,
            Copies = copies.Where(c => c.State != ColdCopyState.Ok || c.Repaired).Select(c => new { c.Month, c.Folder, c.State, c.Detail }),
            ElapsedMs = (long)result.Elapsed.TotalMilliseconds,
        }, CancellationToken.None);
        return result;
    }
}
