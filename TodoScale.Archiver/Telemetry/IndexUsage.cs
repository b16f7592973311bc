using Npgsql;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Telemetry;

/// <summary>
/// One index of one partition (or of a table that is not partitioned), from pg_stat_user_indexes: its table (the
/// partitioned parent), partition, the index as the migrations name it (the parent index), scans since the
/// statistics were reset, index tuples read, size, and whether it backs a primary key or unique constraint.
/// </summary>
public sealed record IndexStat(string Table, string Partition, string Index, string LeafIndex, long Scans, long TuplesRead, long Bytes, bool Constraint);

/// <summary>An index as the migrations made it, summed over its partitions, with what the report says of it.</summary>
public sealed record IndexSummary(
    string Table, string Index, int Partitions, int PartitionsScanned, long Scans, long TuplesRead, long Bytes, bool Constraint,
    DocumentedQueries.Query? Query, IndexVerdict Verdict);

public enum IndexVerdict
{
    /// <summary>Scanned since the statistics were reset.</summary>
    Used,

    /// <summary>Never scanned, but the statistics are younger than the window: too early to say.</summary>
    NotYetJudged,

    /// <summary>Never scanned over the whole window.</summary>
    Unused,

    /// <summary>Never scanned, but it backs a primary key or unique constraint: kept for the constraint.</summary>
    Constraint,
}

/// <summary>Every index's usage, and since when the statistics count.</summary>
public sealed record IndexUsageSnapshot(IReadOnlyList<IndexStat> Indexes, DateTimeOffset StatisticsSince, DateTimeOffset ReadAt)
{
    public TimeSpan Window => ReadAt - StatisticsSince;

    /// <summary>
    /// Per index as the migrations made it: scans summed over its partitions, its documented query (the `-- query:`
    /// line above it), and a verdict: an index no query scanned over at least <paramref name="unusedAfter"/> of
    /// statistics is unused (unless it backs a constraint).
    /// </summary>
    public IReadOnlyList<IndexSummary> Summaries(TimeSpan unusedAfter) =>
        [.. Indexes.GroupBy(i => (i.Table, i.Index)).Select(g =>
        {
            var scans = g.Sum(i => i.Scans);
            var constraint = g.Any(i => i.Constraint);
            var verdict = scans > 0 ? IndexVerdict.Used
                : constraint ? IndexVerdict.Constraint
                : Window >= unusedAfter ? IndexVerdict.Unused
                : IndexVerdict.NotYetJudged;
            return new IndexSummary(g.Key.Table, g.Key.Index, g.Count(), g.Count(i => i.Scans > 0), scans, g.Sum(i => i.TuplesRead), g.Sum(i => i.Bytes),
                constraint, DocumentedQueries.All.FirstOrDefault(q => q.Index == g.Key.Index), verdict);
        }).OrderBy(s => s.Table, StringComparer.Ordinal).ThenBy(s => s.Index, StringComparer.Ordinal)];

    /// <summary>Reads pg_stat_user_indexes for the public schema, each leaf index mapped to its table's and its own parent.</summary>
    public static async Task<IndexUsageSnapshot> ReadAsync(NpgsqlDataSource dataSource, DateTimeOffset now, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var indexes = new List<IndexStat>();
        await using (var command = new NpgsqlCommand(
            """
            SELECT coalesce(pt.relname, s.relname)::text, s.relname::text, coalesce(pi.relname, s.indexrelname)::text, s.indexrelname::text,
                   s.idx_scan, s.idx_tup_read, pg_relation_size(s.indexrelid), x.indisprimary OR x.indisunique
              FROM pg_stat_user_indexes s
              JOIN pg_index x ON x.indexrelid = s.indexrelid
              LEFT JOIN pg_inherits ii ON ii.inhrelid = s.indexrelid
              LEFT JOIN pg_class pi ON pi.oid = ii.inhparent
              LEFT JOIN pg_inherits it ON it.inhrelid = s.relid
              LEFT JOIN pg_class pt ON pt.oid = it.inhparent
             WHERE s.schemaname = 'public'
             ORDER BY 1, 3, 2
            """, connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                indexes.Add(new IndexStat(reader.GetString(0), reader.GetString(1), reader.GetString(2), reader.GetString(3),
                    reader.GetInt64(4), reader.GetInt64(5), reader.GetInt64(6), reader.GetBoolean(7)));
            }
        }

        // Statistics count from their last reset; never reset, at least since the server started (they survive a
        // clean restart, so the real window can be longer: the verdict errs towards "too early").
        await using var since = new NpgsqlCommand(
            "SELECT coalesce(stats_reset, pg_postmaster_start_time()) FROM pg_stat_database WHERE datname = current_database()", connection);
        var statisticsSince = (DateTime)(await since.ExecuteScalarAsync(cancellationToken))!;
        return new IndexUsageSnapshot(indexes, new DateTimeOffset(statisticsSince, TimeSpan.Zero), now);
    }
}
