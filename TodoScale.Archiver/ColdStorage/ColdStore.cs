using System.Data;
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data.Locking;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>What an export did; <see cref="Dropped"/> lists the partitions detached and dropped after it.</summary>
public sealed record ColdExportResult(ColdManifest Manifest, string Folder, IReadOnlyList<string> Dropped, TimeSpan Elapsed, bool AlreadyCold);

/// <summary>What a restore loaded, and from which folders (the first, or a copy where the first's file was damaged).</summary>
public sealed record ColdRestoreResult(ColdManifest Manifest, IReadOnlyList<string> Partitions, TimeSpan Elapsed, IReadOnlyList<string> Sources);

/// <summary>An exported month as `cold list` shows it: its manifest and which of its partitions are attached now.</summary>
public sealed record ColdMonth(ColdManifest Manifest, string Folder, IReadOnlyList<string>? LivePartitions);

/// <summary>A cold-storage operation refused or failed; nothing was changed that the message does not name.</summary>
public class ColdStorageException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>An exported file did not read back to the partition's rows: the partition is kept.</summary>
public sealed class ColdVerificationException(string message, Exception? inner = null) : ColdStorageException(message, inner);

/// <summary>
/// Archive months in cold storage. An export writes each archive table's partition of the month as a
/// gzip-compressed CSV file, reads every file back into a temporary table and compares row count and content
/// checksum with the partition (one snapshot), and only then writes the manifest; with <c>drop</c> it detaches
/// the partitions (DETACH PARTITION CONCURRENTLY), checks the detached table once more against the manifest and
/// drops it. A restore loads the files into new partitions in one transaction that commits only when the
/// checksums match the manifest. DDL runs as the connection's login role, which must own the archive tables
/// (the role that runs `migrate`). One operation per month at a time (an advisory lock).
/// </summary>
public sealed partial class ColdStore(NpgsqlDataSource owner, MaintenanceOptions options, TimeProvider clock, ArchiveMetrics? metrics = null)
{
    /// <summary>Advisory-lock class of cold-storage work on a month (object id: year * 100 + month).</summary>
    public const int AdvisoryLockClass = 0x5453434F; // "TSCO"

    private const string CsvOptions = "(FORMAT csv, HEADER true)";

    /// <summary>For tests: runs on each exported file as soon as it is written (a faulty disk or writer), before it is hashed and read back.</summary>
    internal Func<string, Task>? AfterWrite { get; set; }

    public string Folder => options.ColdStorageFullPath;

    public string MonthFolder(DateOnly month) => Path.Combine(Folder, ArchiveMonths.Format(month));

    /// <summary>
    /// Exports <paramref name="month"/> (both archive tables), verifies the files and publishes the manifest;
    /// with <paramref name="drop"/> then detaches and drops the partitions. Rerunnable: a month whose partitions
    /// are already gone and that has a manifest is reported as already cold.
    /// </summary>
    public async Task<ColdExportResult> ExportAsync(DateOnly month, bool drop, string actorKind, string actor, CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        var monthText = ArchiveMonths.Format(month);
        await using var monthLock = await LockMonthAsync(month, cancellationToken);
        var phase = "export";
        try
        {
            var tables = await PartitionsOfMonthAsync(month, cancellationToken);
            if (tables.Count == 0)
            {
                return ReadManifest(month) is { } existing
                    ? new ColdExportResult(existing, MonthFolder(month), [], TimeProvider.System.GetElapsedTime(started), AlreadyCold: true)
                    : throw new ColdStorageException($"there is no archive partition for {monthText} and no export of it in {Folder}");
            }

            var manifest = await ExportAndVerifyAsync(month, tables, cancellationToken);
            metrics?.ColdExported(manifest.Size);
            await AuditLog.WriteAsync(owner, actorKind, actor, "cold.export", monthText, Details(manifest), CancellationToken.None);

            // The copies, each verified, before anything is dropped: a month leaves the database only once every
            // copy holds it.
            if (CopyFolders.Count > 0)
            {
                phase = "copy";
                await CopyMonthAsync(month, manifest, cancellationToken);
                await AuditLog.WriteAsync(owner, actorKind, actor, "cold.copy", monthText, new { copies = CopyFolders }, CancellationToken.None);
            }

            var dropped = new List<string>();
            if (drop)
            {
                phase = "drop";
                foreach (var table in manifest.Tables)
                {
                    await DetachAndDropAsync(table, month, cancellationToken);
                    dropped.Add(table.Partition);
                }

                await AuditLog.WriteAsync(owner, actorKind, actor, "cold.drop", monthText, new { partitions = dropped, manifest.Rows }, CancellationToken.None);
            }

            return new ColdExportResult(manifest, MonthFolder(month), dropped, TimeProvider.System.GetElapsedTime(started), AlreadyCold: false);
        }
        catch (Exception e) when (e is ColdStorageException or NpgsqlException or IOException or InvalidDataException or TimeoutException)
        {
            metrics?.ColdFailed(phase);
            await AuditLog.TryWriteAsync(owner, actorKind, actor, $"cold.{phase}.failed", monthText, new { error = e.Message });
            throw;
        }
    }

    private async Task<ColdManifest> ExportAndVerifyAsync(DateOnly month, List<(string Table, string Partition)> tables, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(Folder);
        var staging = Path.Combine(Folder, $".{ArchiveMonths.Format(month)}.export-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            var exported = new List<ColdTableFile>();
            string schemaVersion;
            var exportedAt = clock.GetUtcNow();
            await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
            {
                // One snapshot for the checksum and the COPY: the file holds exactly the rows that were counted.
                await using var transaction = await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);
                await PrepareAsync(connection, transaction, cancellationToken);
                schemaVersion = await ScalarAsync<string?>(connection, transaction,
                    "SELECT version FROM schema_history WHERE success AND version ~ '^[0-9]+$' ORDER BY version::int DESC LIMIT 1", cancellationToken) ?? "0";
                foreach (var (table, partition) in tables)
                {
                    var columns = await ColumnsAsync(connection, table, cancellationToken);
                    var part = Quote(partition);
                    // On Citus the month's rows are on the workers: the coordinator's partition is an empty shell.
                    var size = await CitusLayout.IsCitusAsync(connection, cancellationToken) ? "citus_total_relation_size" : "pg_total_relation_size";
                    var bytes = await ScalarAsync<long>(connection, transaction, $"SELECT {size}({Literal(partition)}::regclass)", cancellationToken);
                    var (rows, checksum) = await ChecksumAsync(connection, transaction, part, columns, cancellationToken);
                    var file = $"{table}.csv.gz";
                    var path = Path.Combine(staging, file);
                    await using (var output = new GZipStream(File.Create(path), options.Compression))
                    await using (var writer = new StreamWriter(output, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false)))
                    using (var reader = await connection.BeginTextExportAsync(
                        $"COPY (SELECT {ColumnList(columns)} FROM {part} ORDER BY user_id, id, archived_at) TO STDOUT {CsvOptions}", cancellationToken))
                    {
                        var buffer = new char[64 * 1024];
                        int read;
                        while ((read = await reader.ReadAsync(buffer, cancellationToken)) > 0)
                        {
                            await writer.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
                        }
                    }

                    if (AfterWrite is { } hook)
                    {
                        await hook(path);
                    }

                    exported.Add(new ColdTableFile(table, partition, file, rows, checksum, new FileInfo(path).Length, await Sha256Async(path, cancellationToken), bytes, columns));
                }

                await transaction.CommitAsync(cancellationToken);
            }

            foreach (var table in exported)
            {
                await VerifyFileAsync(table, Path.Combine(staging, table.File), cancellationToken);
            }

            // A table of the month that an earlier export covered and whose partition is gone since (a run that
            // dropped one table and died before the other) keeps its file: the new manifest carries it over.
            if (ReadManifest(month) is { } previous)
            {
                foreach (var kept in previous.Tables.Where(t => exported.All(e => e.Table != t.Table)))
                {
                    var path = Path.Combine(staging, kept.File);
                    File.Copy(Path.Combine(MonthFolder(month), kept.File), path);
                    if (await Sha256Async(path, cancellationToken) != kept.FileSha256)
                    {
                        throw new ColdVerificationException($"{kept.File} of the earlier export of {ArchiveMonths.Format(month)} is damaged (sha256); nothing changed");
                    }

                    exported.Add(kept);
                }
            }

            var manifest = new ColdManifest(ColdManifest.CurrentFormat, ArchiveMonths.Format(month), schemaVersion, exportedAt, clock.GetUtcNow(),
                [.. exported.OrderBy(t => ArchiveMonths.Tables.ToList().IndexOf(t.Table))]);
            await File.WriteAllTextAsync(Path.Combine(staging, ColdManifest.FileName), manifest.ToJson(), cancellationToken);
            Publish(staging, MonthFolder(month));
            return manifest;
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
    }

    /// <summary>Reads the file back: its sha256, then its rows loaded into a temporary table, compared with the partition's count and checksum.</summary>
    private async Task VerifyFileAsync(ColdTableFile table, string path, CancellationToken cancellationToken)
    {
        var sha = await Sha256Async(path, cancellationToken);
        if (sha != table.FileSha256)
        {
            throw new ColdVerificationException($"{table.File} changed after it was written (sha256 {sha}, expected {table.FileSha256}); {table.Partition} is kept");
        }

        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await PrepareAsync(connection, transaction, cancellationToken);
        await ExecuteAsync(connection, transaction, $"CREATE TEMP TABLE cold_verify (LIKE {Quote(table.Table)}) ON COMMIT DROP", cancellationToken);
        try
        {
            await ImportAsync(connection, "cold_verify", table.Columns, path, cancellationToken);
        }
        catch (Exception e) when (e is PostgresException or InvalidDataException or EndOfStreamException)
        {
            throw new ColdVerificationException($"{table.File} does not read back: {Failures.Describe(e)}; {table.Partition} is kept", e);
        }

        var (rows, checksum) = await ChecksumAsync(connection, transaction, "cold_verify", table.Columns, cancellationToken);
        await transaction.RollbackAsync(cancellationToken);
        if (rows != table.Rows || checksum != table.ContentChecksum)
        {
            throw new ColdVerificationException(
                $"{table.File} reads back as {rows:N0} rows with checksum {checksum}, but {table.Partition} has {table.Rows:N0} rows with {table.ContentChecksum}; {table.Partition} is kept");
        }
    }

    /// <summary>Replaces the month's folder with the verified staging folder (a rename each; the old one is removed last).</summary>
    private static void Publish(string staging, string target)
    {
        string? previous = null;
        if (Directory.Exists(target))
        {
            previous = target + $".replaced-{Guid.NewGuid():N}";
            Directory.Move(target, previous);
        }

        Directory.Move(staging, target);
        if (previous is not null)
        {
            Directory.Delete(previous, recursive: true);
        }
    }

    private static async Task ImportAsync(NpgsqlConnection connection, string relation, IReadOnlyList<ColdColumn> columns, string path, CancellationToken cancellationToken)
    {
        await using var input = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var reader = new StreamReader(input, Encoding.UTF8);
        await using var writer = await connection.BeginTextImportAsync($"COPY {relation} ({ColumnList(columns)}) FROM STDIN {CsvOptions}", cancellationToken);
        var buffer = new char[64 * 1024];
        int read;
        while ((read = await reader.ReadAsync(buffer, cancellationToken)) > 0)
        {
            await writer.WriteAsync(buffer.AsMemory(0, read));
        }
    }

    /// <summary>Row count and content checksum (see <see cref="ColdTableFile.ContentChecksum"/>), computed by the server.</summary>
    private static async Task<(long Rows, string Checksum)> ChecksumAsync(
        NpgsqlConnection connection, NpgsqlTransaction? transaction, string relation, IReadOnlyList<ColdColumn> columns, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT count(*)::bigint, {RowChecksum.Aggregate("h")}
              FROM (SELECT {RowChecksum.RowHash(ColumnList(columns))} AS h FROM {relation}) r
            """, connection, transaction);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetString(1));
    }

    /// <summary>Text output that does not depend on the session: UTC timestamps, ISO dates, exact floats.</summary>
    private static Task PrepareAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, CancellationToken cancellationToken) =>
        ExecuteAsync(connection, transaction,
            "SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; SET LOCAL extra_float_digits = 3",
            cancellationToken);

    private async Task<List<ColdColumn>> ColumnsAsync(string table, CancellationToken cancellationToken)
    {
        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        return await ColumnsAsync(connection, table, cancellationToken);
    }

    private static async Task<List<ColdColumn>> ColumnsAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken) =>
        [.. (await Catalog.ColumnsAsync(connection, null, table, cancellationToken)).Select(c => new ColdColumn(c.Name, c.Type))];

    /// <summary>A session advisory lock on the month (<see cref="SessionLock"/>), released when the returned handle is disposed.</summary>
    private async Task<SessionLock> LockMonthAsync(DateOnly month, CancellationToken cancellationToken) =>
        await SessionLock.TryTakeAsync(owner, AdvisoryLockClass, month.Year * 100 + month.Month, cancellationToken)
        ?? throw new ColdStorageException($"another cold-storage operation on {ArchiveMonths.Format(month)} is running; try again when it ends");

    private static async Task<string> Sha256Async(string path, CancellationToken cancellationToken)
    {
        await using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(await SHA256.HashDataAsync(stream, cancellationToken));
    }

    private static object Details(ColdManifest manifest) => new
    {
        manifest.Rows,
        manifest.FileBytes,
        manifest.PartitionBytes,
        CompressionRatio = Math.Round(manifest.CompressionRatio, 2),
        manifest.SchemaVersion,
        Tables = manifest.Tables.Select(t => new { t.Partition, t.Rows, t.ContentChecksum, t.FileSha256 }),
    };

    private static string Describe(IReadOnlyList<ColdColumn> columns) => string.Join(", ", columns.Select(c => $"{c.Name} {c.Type}"));

    private static string ColumnList(IReadOnlyList<ColdColumn> columns) => string.Join(", ", columns.Select(c => Quote(c.Name)));

    private static string Timestamp(DateTimeOffset at) => Literal(at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'+00'", CultureInfo.InvariantCulture));
}
