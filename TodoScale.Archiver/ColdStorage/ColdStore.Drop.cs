using Npgsql;
using TodoScale.Data.Schema;
using TodoScale.Data.Partitioning;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>After an export: the month's partitions detached, checked once more against the manifest, and dropped.</summary>
public sealed partial class ColdStore
{
    /// <summary>
    /// Detaches the partition (CONCURRENTLY where the server supports it, finishing a detach an earlier run left
    /// pending), checks the detached table against the manifest and drops it; a table that no longer matches is
    /// attached again and the drop refused.
    /// </summary>
    private async Task DetachAndDropAsync(ColdTableFile table, DateOnly month, CancellationToken cancellationToken)
    {
        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        await ExecuteAsync(connection, null, $"SET lock_timeout = {(long)options.LockTimeout.TotalMilliseconds}", cancellationToken);
        var parent = Quote(table.Table);
        var part = Quote(table.Partition);
        var state = await StateAsync(connection, table.Partition, cancellationToken);
        if (state == PartitionState.Missing)
        {
            return;
        }

        if (state == PartitionState.DetachPending)
        {
            await ExecuteAsync(connection, null, $"ALTER TABLE {parent} DETACH PARTITION {part} FINALIZE", cancellationToken);
        }
        else if (state == PartitionState.Attached && await CitusLayout.IsCitusAsync(connection, cancellationToken))
        {
            // Citus has no DETACH ... CONCURRENTLY (it raises XX000 "currently unsupported"): a plain DETACH, which
            // holds ACCESS EXCLUSIVE on the archive table for the moment of the catalog change (no scan).
            await ExecuteAsync(connection, null, $"ALTER TABLE {parent} DETACH PARTITION {part}", cancellationToken);
        }
        else if (state == PartitionState.Attached)
        {
            try
            {
                await ExecuteAsync(connection, null, $"ALTER TABLE {parent} DETACH PARTITION {part} CONCURRENTLY", cancellationToken);
            }
            catch (PostgresException e) when (e.SqlState == PostgresErrorCodes.FeatureNotSupported)
            {
                // A table with a default partition cannot detach concurrently.
                await ExecuteAsync(connection, null, $"ALTER TABLE {parent} DETACH PARTITION {part}", cancellationToken);
            }
        }

        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        await PrepareAsync(connection, transaction, cancellationToken);
        await ExecuteAsync(connection, transaction, $"LOCK TABLE {part} IN ACCESS EXCLUSIVE MODE", cancellationToken);
        var (rows, checksum) = await ChecksumAsync(connection, transaction, part, table.Columns, cancellationToken);
        if (rows != table.Rows || checksum != table.ContentChecksum)
        {
            var (from, to) = ArchiveMonths.Bounds(month);
            await ExecuteAsync(connection, transaction, $"ALTER TABLE {parent} ATTACH PARTITION {part} FOR VALUES FROM ({Timestamp(from)}) TO ({Timestamp(to)})", cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            throw new ColdVerificationException(
                $"{table.Partition} changed after its export ({rows:N0} rows now, {table.Rows:N0} exported): it stays attached; export {ArchiveMonths.Format(month)} again");
        }

        await ExecuteAsync(connection, transaction, $"DROP TABLE {part}", cancellationToken);
        await transaction.CommitAsync(cancellationToken);
    }

    private enum PartitionState { Missing, Attached, DetachPending, Detached }

    private static async Task<PartitionState> StateAsync(NpgsqlConnection connection, string partition, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT c.oid IS NOT NULL, i.inhrelid IS NOT NULL, coalesce(i.inhdetachpending, false)
              FROM (SELECT to_regclass(@name) AS oid) c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("name", "public." + Quote(partition)));
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetBoolean(0), reader.GetBoolean(1), reader.GetBoolean(2)) switch
        {
            (false, _, _) => PartitionState.Missing,
            (true, true, true) => PartitionState.DetachPending,
            (true, true, false) => PartitionState.Attached,
            _ => PartitionState.Detached,
        };
    }

    /// <summary>The archive tables that have a table for <paramref name="month"/> (attached or not).</summary>
    private async Task<List<(string Table, string Partition)>> PartitionsOfMonthAsync(DateOnly month, CancellationToken cancellationToken)
    {
        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        var found = new List<(string, string)>();
        foreach (var table in ArchiveMonths.Tables)
        {
            var partition = ArchiveMonths.PartitionName(table, month);
            if (await StateAsync(connection, partition, cancellationToken) != PartitionState.Missing)
            {
                found.Add((table, partition));
            }
        }

        return found;
    }
}
