using System.Globalization;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Partitioning;
using TodoScale.Data.Schema;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Telemetry;

/// <summary>
/// One partition's size: rows (the statistics' live-row count, or counted with <c>exact</c>), bytes on disk
/// (table, indexes, TOAST), distinct users (pg_stats' estimate, counted when the partition was never analyzed
/// and is small, or with <c>exact</c>) and, for the active tables, the rows waiting to be archived.
/// </summary>
/// <param name="Key">"00".."63" for a hash partition, "2026-11" for an archive month.</param>
public sealed record PartitionStat(string Table, string Partition, string Key, long Rows, long Bytes, long? Users, long? Waiting);

/// <summary>Everything `partitions status` prints and the archiver's gauges export, read in one go.</summary>
public sealed record PartitionSnapshot(IReadOnlyList<PartitionStat> Active, IReadOnlyList<PartitionStat> ArchiveMonths, int MonthsAhead, DateTimeOffset At)
{
    /// <summary>Largest partition's rows over the mean partition's rows, per active table (1 is perfectly even).</summary>
    public double Skew(string table)
    {
        var rows = Active.Where(p => p.Table == table).Select(p => (double)p.Rows).ToList();
        return rows.Count == 0 || rows.Average() == 0 ? 1 : rows.Max() / rows.Average();
    }
}

public static class PartitionStats
{
    public static readonly IReadOnlyList<string> ActiveTables = ["todos_active", "ai_interactions"];

    /// <summary>Below this many rows a partition without statistics has its users counted instead of left unknown.</summary>
    private const long CountUsersUpTo = 200_000;

    public static async Task<PartitionSnapshot> ReadAsync(NpgsqlDataSource dataSource, ArchiveOptions archive, DateTimeOffset now, bool exact, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var active = new List<PartitionStat>();
        var months = new List<PartitionStat>();
        var citus = await CitusLayout.IsCitusAsync(connection, cancellationToken);
        foreach (var (table, partition, rows, bytes, users) in await CatalogAsync(connection, [.. ActiveTables, .. ArchiveMonths.Tables], citus, cancellationToken))
        {
            var counted = exact || (users is null && rows <= CountUsersUpTo)
                ? await CountAsync(connection, partition, cancellationToken)
                : ((long Rows, long Users)?)null;
            var rowCount = exact && counted is { } c ? c.Rows : rows;
            var userCount = counted?.Users ?? users;
            if (ArchiveMonths.Tables.Contains(table))
            {
                if (ArchiveMonths.MonthOfPartition(table, partition) is { } month)
                {
                    months.Add(new PartitionStat(table, partition, ArchiveMonths.Format(month), rowCount, bytes, userCount, null));
                }

                continue;
            }

            var waiting = table == "todos_active"
                ? await WaitingAsync(connection, partition, "status IN ('done', 'cancelled') AND completed_at < @cutoff", now - archive.OlderThan, cancellationToken)
                : await WaitingAsync(connection, partition, "created_at < @cutoff", now - archive.AiOlderThan, cancellationToken);
            active.Add(new PartitionStat(table, partition, HashKey(partition), rowCount, bytes, userCount, waiting));
        }

        var current = ArchiveMonths.MonthOf(now);
        var ahead = months.Where(m => m.Table == "todos_archived").Select(m => ArchiveMonths.Parse(m.Key)!.Value).ToHashSet();
        var monthsAhead = 0;
        while (ahead.Contains(current.AddMonths(monthsAhead + 1)))
        {
            monthsAhead++;
        }

        return new PartitionSnapshot(active, [.. months.OrderBy(m => m.Key, StringComparer.Ordinal).ThenBy(m => m.Table, StringComparer.Ordinal)], monthsAhead, now);
    }

    private static string HashKey(string partition) =>
        partition.LastIndexOf("_p", StringComparison.Ordinal) is var at and >= 0 ? partition[(at + 2)..] : partition;

    /// <summary>
    /// Each partition's live rows, bytes and users estimate from the catalog. On a Citus coordinator the partitions
    /// are empty shells: the rows are summed over the partition's shards on the workers (their statistics' live-row
    /// counts, one command per shard), the bytes are citus_total_relation_size, and the users are left unknown (the
    /// coordinator has no statistics of them), so small partitions are counted.
    /// </summary>
    private static async Task<List<(string Table, string Partition, long Rows, long Bytes, long? Users)>> CatalogAsync(
        NpgsqlConnection connection, string[] parents, bool citus, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(citus ?
            """
            SELECT p.relname, c.relname,
                   (SELECT coalesce(sum(r.result::bigint), 0)::bigint FROM run_command_on_shards(c.oid::regclass,
                        $$SELECT coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '%s'::regclass), 0)$$) r
                     WHERE r.success),
                   citus_total_relation_size(c.oid), NULL::bigint
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
              JOIN pg_class p ON p.oid = i.inhparent
             WHERE p.relname = ANY(@parents) AND p.relnamespace = 'public'::regnamespace
             ORDER BY p.relname, c.relname
            """ :
            """
            SELECT p.relname, c.relname, coalesce(s.n_live_tup, 0), pg_total_relation_size(c.oid),
                   (SELECT round(CASE WHEN st.n_distinct >= 0 THEN st.n_distinct ELSE -st.n_distinct * greatest(c.reltuples, 0) END)::bigint
                      FROM pg_stats st WHERE st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = 'user_id')
              FROM pg_inherits i
              JOIN pg_class c ON c.oid = i.inhrelid
              JOIN pg_namespace n ON n.oid = c.relnamespace
              JOIN pg_class p ON p.oid = i.inhparent
              LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
             WHERE p.relname = ANY(@parents) AND p.relnamespace = 'public'::regnamespace
             ORDER BY p.relname, c.relname
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string[]>("parents", NpgsqlDbType.Array | NpgsqlDbType.Text) { TypedValue = parents });
        var rows = new List<(string, string, long, long, long?)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add((reader.GetString(0), reader.GetString(1), reader.GetInt64(2), reader.GetInt64(3), reader.IsDBNull(4) ? null : reader.GetInt64(4)));
        }

        return rows;
    }

    private static async Task<(long Rows, long Users)> CountAsync(NpgsqlConnection connection, string partition, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT count(*), count(DISTINCT user_id) FROM {Quote(partition)}", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    /// <summary>Rows the next pass would consider (the archiver's own partial index answers it).</summary>
    private static async Task<long> WaitingAsync(NpgsqlConnection connection, string partition, string condition, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT count(*) FROM {Quote(partition)} WHERE {condition}", connection);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
        return (long)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.0} GB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.0} MB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0} kB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };
}
