using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Data.Partitioning;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>`cold restore`: an exported month loaded back into its partitions, committed only when every checksum matches.</summary>
public sealed partial class ColdStore
{
    /// <summary>Re-creates the month's partitions from its export, exactly: one transaction that commits only when every checksum matches.</summary>
    public async Task<ColdRestoreResult> RestoreAsync(DateOnly month, string actorKind, string actor, CancellationToken cancellationToken)
    {
        var started = TimeProvider.System.GetTimestamp();
        var monthText = ArchiveMonths.Format(month);
        await using var monthLock = await LockMonthAsync(month, cancellationToken);
        try
        {
            var manifest = ReadManifestAnywhere(month)
                ?? throw new ColdStorageException($"there is no export of {monthText} in {Folder}{(CopyFolders.Count > 0 ? " or its copies" : "")} (see `cold list`)");
            foreach (var table in manifest.Tables)
            {
                var columns = await ColumnsAsync(table.Table, cancellationToken);
                if (!columns.SequenceEqual(table.Columns))
                {
                    throw new ColdStorageException(
                        $"{table.Table} has changed since {monthText} was exported (schema version {manifest.SchemaVersion}): " +
                        $"the file has columns ({Describe(table.Columns)}), the table has ({Describe(columns)}); nothing restored");
                }
            }

            // Each file from the first folder whose copy is intact (sha256): the first folder, then the copies.
            var files = await ReadableFilesAsync(manifest, month, cancellationToken);

            var (from, to) = ArchiveMonths.Bounds(month);
            await using var connection = await owner.OpenConnectionAsync(cancellationToken);
            await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
            await PrepareAsync(connection, transaction, cancellationToken);
            var restored = new List<string>();
            foreach (var table in manifest.Tables)
            {
                var state = await StateAsync(connection, table.Partition, cancellationToken);
                if (state == PartitionState.Detached)
                {
                    throw new ColdStorageException($"{table.Partition} exists but is not attached (an interrupted drop): run `maintain --once` to finish it; nothing restored");
                }

                var part = Quote(table.Partition);
                if (state == PartitionState.Attached)
                {
                    if (await ScalarAsync<bool>(connection, transaction, $"SELECT EXISTS (SELECT 1 FROM {part})", cancellationToken))
                    {
                        throw new ColdStorageException($"{monthText} is live: {table.Partition} exists and has rows; nothing restored");
                    }
                }
                else
                {
                    await ExecuteAsync(connection, transaction, $"CREATE TABLE {part} (LIKE {Quote(table.Table)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)", cancellationToken);
                }

                await ImportAsync(connection, part, table.Columns, files[table.Table], cancellationToken);
                var (rows, checksum) = await ChecksumAsync(connection, transaction, part, table.Columns, cancellationToken);
                if (rows != table.Rows || checksum != table.ContentChecksum)
                {
                    throw new ColdVerificationException(
                        $"{table.File} loaded {rows:N0} rows with checksum {checksum}, the manifest says {table.Rows:N0} rows with {table.ContentChecksum}; nothing restored");
                }

                if (state == PartitionState.Missing)
                {
                    // A CHECK that matches the bounds lets ATTACH skip its validation scan; it is dropped after.
                    var bounds = Quote(table.Partition + "_bounds");
                    await ExecuteAsync(connection, transaction,
                        $"""
                        ALTER TABLE {part} ADD CONSTRAINT {bounds} CHECK (archived_at IS NOT NULL AND archived_at >= {Timestamp(from)} AND archived_at < {Timestamp(to)});
                        ALTER TABLE {Quote(table.Table)} ATTACH PARTITION {part} FOR VALUES FROM ({Timestamp(from)}) TO ({Timestamp(to)});
                        ALTER TABLE {part} DROP CONSTRAINT {bounds};
                        SELECT todoscale_secure_partition({Literal(table.Table)}::regclass, {Literal(table.Partition)}::regclass);
                        """, cancellationToken);
                }

                await ExecuteAsync(connection, transaction, $"ANALYZE {part}", cancellationToken);
                restored.Add(table.Partition);
            }

            await transaction.CommitAsync(cancellationToken);
            await AuditLog.WriteAsync(owner, actorKind, actor, "cold.restore", monthText, new { partitions = restored, manifest.Rows, manifest.SchemaVersion, files = files.Values }, CancellationToken.None);
            return new ColdRestoreResult(manifest, restored, TimeProvider.System.GetElapsedTime(started), [.. files.Values.Select(Path.GetDirectoryName).Distinct()!]);
        }
        catch (Exception e) when (e is ColdStorageException or NpgsqlException or IOException or InvalidDataException or TimeoutException)
        {
            metrics?.ColdFailed("restore");
            await AuditLog.TryWriteAsync(owner, actorKind, actor, "cold.restore.failed", monthText, new { error = e.Message });
            throw;
        }
    }
}
