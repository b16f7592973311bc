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
public sealed record PartitionStat(string Table, string Partition, string Key, long Rows, long Bytes, long? Users, long? Waiting)
{
    /// <summary>On Citus, the worker holding the shard (host:port); null for a partition on one PostgreSQL.</summary>
    public string? Node { get; init; }
}

/// <summary>Everything `partitions status` prints and the archiver's gauges export, read in one go.</summary>
public sealed record PartitionSnapshot(IReadOnlyList<PartitionStat> Active, IReadOnlyList<PartitionStat> ArchiveMonths, int MonthsAhead, DateTimeOffset At)
{
    /// <summary>What the active tables' units are: "partitions" on one PostgreSQL, "shards" on Citus (one distributed table each).</summary>
    public string Units => Active.Any(p => p.Node is not null) ? "shards" : "partitions";

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
        if (citus)
        {
            foreach (var table in ActiveTables)
            {
                active.AddRange(await ShardsAsync(connection, table, exact, now - (table == "todos_active" ? archive.OlderThan : archive.AiOlderThan), cancellationToken));
            }
        }

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

    /// <summary>
    /// On Citus, where <paramref name="table"/> is one distributed table (<see cref="CitusLayout.Flattened"/>), its
    /// shards are its partitions: one stat per shard, keyed by the shard's place in hash order ("00" holds the lowest
    /// hash range), with the shard's name, live rows and users from the worker's own statistics, bytes from
    /// citus_shards, and the rows waiting to be archived counted on the shard by the archiver's partial index. Empty
    /// when the table is not distributed whole (a layout of local partitions, each distributed, is read per partition).
    /// run_command_on_shards formats each command with the shard's name as its one argument: %s once, or %1$s where
    /// the name is needed more than once.
    /// </summary>
    private static async Task<List<PartitionStat>> ShardsAsync(NpgsqlConnection connection, string table, bool exact, DateTimeOffset cutoff, CancellationToken cancellationToken)
    {
        var waiting = table == "todos_active"
            ? "SELECT count(*) FROM %%s WHERE status IN ('done', 'cancelled') AND completed_at < %L"
            : "SELECT count(*) FROM %%s WHERE created_at < %L";
        await using var command = new NpgsqlCommand(
            $$"""
            WITH shards AS (
                SELECT s.shardid, shard_name(s.logicalrelid, s.shardid) AS name,
                       row_number() OVER (ORDER BY s.shardminvalue::int) - 1 AS place,
                       (SELECT sum(cs.shard_size) FROM citus_shards cs WHERE cs.shardid = s.shardid)::bigint AS bytes,
                       (SELECT string_agg(cs.nodename || ':' || cs.nodeport, ', ') FROM citus_shards cs WHERE cs.shardid = s.shardid) AS node
                  FROM pg_dist_shard s
                 WHERE s.logicalrelid = to_regclass(@table)
                   AND NOT EXISTS (SELECT FROM pg_inherits i WHERE i.inhparent = s.logicalrelid))
            SELECT sh.name, sh.place, coalesce(sh.bytes, 0),
                   (SELECT r.result FROM run_command_on_shards(@table,
                        CASE WHEN @exact THEN 'SELECT count(*) || '' '' || count(DISTINCT user_id) FROM %s'
                             ELSE $q$SELECT coalesce((SELECT n_live_tup FROM pg_stat_user_tables WHERE relid = '%1$s'::regclass), 0) || ' ' ||
                                  coalesce((SELECT round(CASE WHEN st.n_distinct >= 0 THEN st.n_distinct ELSE -st.n_distinct * greatest(c.reltuples, 0) END)::bigint::text
                                              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                                              JOIN pg_stats st ON st.schemaname = n.nspname AND st.tablename = c.relname AND st.attname = 'user_id'
                                             WHERE c.oid = '%1$s'::regclass), '-')$q$ END) r
                     WHERE r.shardid = sh.shardid AND r.success),
                   (SELECT r.result::bigint FROM run_command_on_shards(@table, format($w${{waiting}}$w$, @cutoff::text)) r
                     WHERE r.shardid = sh.shardid AND r.success)
                   , coalesce(sh.node, '?')
              FROM shards sh ORDER BY sh.place
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        command.Parameters.Add(new NpgsqlParameter<bool>("exact", exact));
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
        var shards = new List<(string Name, long Place, long Bytes, string? Counts, long? Waiting, string Node)>();
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                shards.Add((reader.GetString(0), reader.GetInt64(1), reader.GetInt64(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetInt64(4), reader.GetString(5)));
            }
        }

        var parsed = shards.Select(shard =>
        {
            var parts = (shard.Counts ?? "0 -").Split(' ');
            long? users = parts.Length > 1 && long.TryParse(parts[1], CultureInfo.InvariantCulture, out var u) ? u : null;
            return (shard.Name, shard.Place, shard.Bytes, Rows: long.Parse(parts[0], CultureInfo.InvariantCulture), Users: users, shard.Waiting, shard.Node);
        }).ToList();

        // Small shards never analyzed: their users counted on the workers, as a small partition's are (one command).
        var counted = parsed.Any(p => p.Users is null && p.Rows <= CountUsersUpTo)
            ? await UsersPerShardAsync(connection, table, cancellationToken)
            : [];
        return [.. parsed.Select(p => new PartitionStat(table, p.Name, p.Place.ToString("00", CultureInfo.InvariantCulture), p.Rows, p.Bytes,
            p.Users ?? (p.Rows <= CountUsersUpTo && counted.TryGetValue(p.Name, out var users) ? users : null), p.Waiting) { Node = p.Node })];
    }

    private static async Task<Dictionary<string, long>> UsersPerShardAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT shard_name(@table::regclass, r.shardid), r.result::bigint FROM run_command_on_shards(@table, 'SELECT count(DISTINCT user_id) FROM %s') r WHERE r.success",
            connection);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        var users = new Dictionary<string, long>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            users[reader.GetString(0)] = reader.GetInt64(1);
        }

        return users;
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
