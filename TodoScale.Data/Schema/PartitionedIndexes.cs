using System.Diagnostics;
using Npgsql;
using static TodoScale.Data.SqlText;

namespace TodoScale.Data.Schema;

/// <summary>
/// The online half of a migration that adds an index to a partitioned table: the script creates the parent's index
/// ON ONLY (no partition touched, invalid), and this builds each partition's with CREATE INDEX CONCURRENTLY (writes go
/// on) and attaches it; with the last one attached PostgreSQL marks the parent's index valid. Run by `migrate` after
/// the scripts, so an interrupted run is finished by the next: a partition's index left invalid by a failed
/// concurrent build is dropped and built again, one built but not attached is attached.
/// </summary>
public static class PartitionedIndexes
{
    private sealed record Missing(string ParentIndex, string Partition, string Schema, string ChildIndex, string Definition, bool Exists, bool ExistsValid);

    /// <summary>Completes every invalid partitioned index, logging each one it completed.</summary>
    public static async Task CompleteAsync(NpgsqlConnection connection, Action<string> log, CancellationToken cancellationToken = default)
    {
        var missing = await MissingAsync(connection, cancellationToken);
        foreach (var parent in missing.GroupBy(m => m.ParentIndex))
        {
            var started = Stopwatch.StartNew();
            foreach (var m in parent)
            {
                await CompleteOneAsync(connection, m, cancellationToken);
            }

            log($"{parent.Key}: {parent.Count()} partition index(es) built concurrently and attached ({started.ElapsedMilliseconds} ms)");
        }
    }

    private static async Task CompleteOneAsync(NpgsqlConnection connection, Missing m, CancellationToken cancellationToken)
    {
        if (m.Exists && !m.ExistsValid)
        {
            await Catalog.ExecuteAsync(connection, null, $"DROP INDEX CONCURRENTLY IF EXISTS {Quote(m.Schema)}.{Quote(m.ChildIndex)}", cancellationToken);
        }

        if (!m.ExistsValid)
        {
            await Catalog.ExecuteAsync(connection, null, m.Definition, cancellationToken);
        }

        await Catalog.ExecuteAsync(connection, null,
            $"ALTER INDEX {Quote(m.Schema)}.{Quote(m.ParentIndex)} ATTACH PARTITION {Quote(m.Schema)}.{Quote(m.ChildIndex)}", cancellationToken);
    }

    /// <summary>
    /// Each partition of a table whose partitioned index is invalid, without an index attached to it: the name its
    /// index gets (the parent index's name with the table's name replaced by the partition's, as PostgreSQL's own
    /// are built from the table name), its CREATE INDEX CONCURRENTLY, and whether an index of that name exists.
    /// </summary>
    private static async Task<List<Missing>> MissingAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var missing = new List<Missing>();
        await using var command = new NpgsqlCommand(
            """
            WITH pending AS (
                SELECT pi.indexrelid AS parent_oid, ic.relname AS parent_index, t.relname AS table_name, n.nspname, p.oid AS partition, p.relname AS partition_name,
                       left(CASE WHEN starts_with(ic.relname, t.relname) THEN p.relname || substr(ic.relname, length(t.relname) + 1)
                                 ELSE p.relname || '_' || ic.relname END, 63) AS child_index
                  FROM pg_index pi
                  JOIN pg_class ic ON ic.oid = pi.indexrelid AND ic.relkind = 'I'
                  JOIN pg_class t ON t.oid = pi.indrelid
                  JOIN pg_namespace n ON n.oid = t.relnamespace
                  JOIN pg_inherits inh ON inh.inhparent = t.oid
                  JOIN pg_class p ON p.oid = inh.inhrelid AND p.relkind = 'r'
                 WHERE NOT pi.indisvalid
                   AND NOT EXISTS (SELECT FROM pg_inherits ii JOIN pg_index ci ON ci.indexrelid = ii.inhrelid
                                    WHERE ii.inhparent = pi.indexrelid AND ci.indrelid = p.oid)
            )
            SELECT parent_index, partition_name, nspname, child_index,
                   regexp_replace(pg_get_indexdef(parent_oid),
                                  '^CREATE (UNIQUE )?INDEX \S+ ON ONLY \S+ ',
                                  'CREATE \1INDEX CONCURRENTLY ' || quote_ident(child_index) || ' ON ' || quote_ident(nspname) || '.' || quote_ident(partition_name) || ' '),
                   x.indexrelid IS NOT NULL, coalesce(x.indisvalid, false)
              FROM pending
              LEFT JOIN pg_class c ON c.relname = child_index AND c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = pending.nspname)
              LEFT JOIN pg_index x ON x.indexrelid = c.oid AND x.indrelid = pending.partition
             ORDER BY parent_index, partition_name
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            missing.Add(new Missing(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3), reader.GetString(4), reader.GetBoolean(5), reader.GetBoolean(6)));
        }

        return missing;
    }
}
