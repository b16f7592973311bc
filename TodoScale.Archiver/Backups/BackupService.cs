using System.Diagnostics;
using Npgsql;
using TodoScale.Archiver.Database;

namespace TodoScale.Archiver.Backups;

/// <summary>What `backup restore` made: the folder, the port it is up on, how long it took and how much it holds.</summary>
public sealed record RestoreResult(string Folder, int Port, DateTimeOffset Target, TimeSpan Elapsed, long Bytes);

/// <summary>
/// Backups and restores of the primary, as the CLI and the worker run them: pgBackRest for the files, the live
/// primary for the instants (its clock, its WAL), audit_log for the record.
/// </summary>
public sealed class BackupService(PgBackRest tool, NpgsqlDataSource owner, string liveConnectionString)
{
    /// <summary>How long the newest WAL may take to reach the repository before a restore says archiving is failing.</summary>
    public static readonly TimeSpan ArchiveWait = TimeSpan.FromMinutes(2);

    public PgBackRest Tool { get; } = tool;

    public async Task<BackupSet> RunAsync(string type, string actorKind, string actor, Action<string>? progress, CancellationToken cancellationToken)
    {
        try
        {
            var backup = await Tool.BackupAsync(type, progress, cancellationToken);
            await AuditLog.WriteAsync(owner, actorKind, actor, "backup.run", backup.Label, new
            {
                backup.Type, database_bytes = backup.DatabaseBytes, repository_bytes = backup.RepositoryBytes,
                seconds = backup.Duration.TotalSeconds, backup.WalStart, backup.WalStop,
            }, cancellationToken);
            return backup;
        }
        catch (BackupException e)
        {
            await AuditLog.TryWriteAsync(owner, actorKind, actor, "backup.failed", type, new { error = e.Message });
            throw;
        }
    }

    /// <summary>
    /// The cluster as of <paramref name="target"/> (the live primary's clock), restored into <paramref name="folder"/>
    /// (absent or empty, never the live one) and started read-only on <paramref name="port"/>.
    /// </summary>
    public async Task<RestoreResult> RestoreAsync(
        DateTimeOffset target, string folder, int port, string actorKind, string actor, Action<string>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.StartNew();
        var now = await ScalarAsync<DateTime>("SELECT now()", cancellationToken);
        if (target > new DateTimeOffset(now, TimeSpan.Zero))
        {
            throw new BackupException($"{PgBackRest.Timestamp(target)} is in the future (the primary's clock reads {PgBackRest.Timestamp(now)})");
        }

        var inventory = await Tool.InfoAsync(cancellationToken);
        if (inventory.RecoverableFrom is not { } from)
        {
            throw new BackupException("the repository holds no backup yet: take one with `backup run --type full` (the worker also takes them on its schedule)");
        }

        if (target < from)
        {
            throw new BackupException($"no backup ends before {PgBackRest.Timestamp(target)}: the earliest instant that can be restored is {PgBackRest.Timestamp(from)}");
        }

        progress?.Invoke("archiving the primary's newest WAL");
        await ArchiveNewestWalAsync(cancellationToken);

        progress?.Invoke($"restoring into {folder}");
        await Tool.RestoreAsync(target, folder, progress, cancellationToken);
        var cluster = new RestoredCluster(folder, port);
        progress?.Invoke($"starting it on 127.0.0.1:{port} and replaying WAL up to {PgBackRest.Timestamp(target)}");
        await cluster.StartAsync(cancellationToken);
        await cluster.WaitForTargetAsync(liveConnectionString, cancellationToken);

        var bytes = Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        var result = new RestoreResult(folder, port, target, started.Elapsed, bytes);
        await AuditLog.WriteAsync(owner, actorKind, actor, "backup.restore", folder, new
        {
            target = PgBackRest.Timestamp(target), port, bytes, seconds = result.Elapsed.TotalSeconds,
        }, cancellationToken);
        return result;
    }

    /// <summary>
    /// Closes the current WAL segment and waits until it is in the repository, so a restore can reach the latest
    /// commits; fails with pg_stat_archiver's words when archiving is failing.
    /// </summary>
    private async Task ArchiveNewestWalAsync(CancellationToken cancellationToken)
    {
        var segment = await ScalarAsync<string>("SELECT pg_walfile_name(pg_switch_wal())", cancellationToken);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            await using var command = owner.CreateCommand(
                "SELECT coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), last_failed_time, failed_count FROM pg_stat_archiver");
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            var archived = reader.GetString(0);
            if (string.CompareOrdinal(archived, segment) >= 0)
            {
                return;
            }

            if (waited.Elapsed > ArchiveWait)
            {
                var failed = reader.GetString(1);
                throw new BackupException(failed.Length > 0
                    ? $"WAL archiving is failing ({reader.GetInt64(3)} failures, the last on {failed} at {reader.GetDateTime(2):u}): the newest changes are not in the repository; see {Tool.Options.ConfigFullPath}'s log-path"
                    : $"segment {segment} did not reach the repository within {ArchiveWait.TotalMinutes:0} min (last archived: {archived})");
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }
    }

    private async Task<T> ScalarAsync<T>(string sql, CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
