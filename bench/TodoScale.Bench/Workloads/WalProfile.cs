using System.Diagnostics;
using System.Text.RegularExpressions;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Testing;

namespace TodoScale.Bench.Workloads;

/// <summary>Where a move's WAL begins: the flushed position, and pg_stat_wal's counters (the fallback when pg_waldump fails).</summary>
public sealed record WalMark(string Lsn, WalSpent Counters)
{
    public static async Task<WalMark> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken) =>
        new(await WalProfile.FlushedLsnAsync(connection, cancellationToken), await WalSpent.ReadAsync(connection, cancellationToken));
}

/// <summary>
/// Where a move's WAL went: pg_waldump over the LSN range the move wrote, its records and full-page images by
/// record type (Heap/DELETE, Btree/INSERT_LEAF, ..) and its full-page images by relation, partitions and their
/// indexes counted under the table or index they belong to. pg_stat_wal says how much; this says which pages.
/// </summary>
public sealed partial record WalProfile(string From, string To, IReadOnlyList<WalProfile.Line> ByRecord, IReadOnlyList<WalProfile.Line> ByRelation)
{
    /// <summary>
    /// What the range holds: records and full-page images counted by pg_waldump, bytes between the LSNs; where
    /// pg_waldump failed, pg_stat_wal's counters over the move, which are a backend's counters as last flushed, up to
    /// a second behind (short of a short move's).
    /// </summary>
    public WalSpent Total { get; init; } = new(0, 0, 0);

    /// <summary>Why there is no profile (pg_waldump failed: the segments recycled, say), when there is none.</summary>
    public string? Failure { get; init; }

    public sealed record Line(string Name, long Records, long FullPageImages);

    /// <summary>Where the server has flushed its WAL to: a move's range starts and ends there.</summary>
    public static Task<string> FlushedLsnAsync(NpgsqlConnection connection, CancellationToken cancellationToken) =>
        Baselines.ScalarAsync<string>(connection, "SELECT pg_current_wal_flush_lsn()::text", cancellationToken);

    /// <summary>
    /// pg_waldump over [<paramref name="from"/>, now) of the server <paramref name="connection"/> reaches (the bench's
    /// process-mode primary: its data directory and pg_waldump are on this machine). Read right after the move, before
    /// a checkpoint can recycle its segments.
    /// </summary>
    public static async Task<WalProfile> ReadAsync(NpgsqlConnection connection, WalMark from, CancellationToken cancellationToken)
    {
        var to = await FlushedLsnAsync(connection, cancellationToken);
        try
        {
            return await DumpAsync(connection, from.Lsn, to, cancellationToken);
        }
        catch (Exception e) when (e is InvalidOperationException or System.ComponentModel.Win32Exception)
        {
            return new WalProfile(from.Lsn, to, [], []) { Failure = e.Message, Total = await WalSpent.ReadAsync(connection, cancellationToken) - from.Counters };
        }
    }

    private static async Task<WalProfile> DumpAsync(NpgsqlConnection connection, string from, string to, CancellationToken cancellationToken)
    {
        var dataDirectory = await Baselines.ScalarAsync<string>(connection, "SELECT current_setting('data_directory')", cancellationToken);
        var binDirectory = await Baselines.ScalarAsync<string>(connection, "SELECT setting FROM pg_config WHERE name = 'BINDIR'", cancellationToken);
        var names = await RelationNamesAsync(connection, cancellationToken);

        var info = ProcessRunner.StartInfo(Path.Combine(binDirectory, "pg_waldump"), ["-p", Path.Combine(dataDirectory, "pg_wal"), "-s", from, "-e", to]);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start pg_waldump");
        var errors = process.StandardError.ReadToEndAsync(cancellationToken);
        var byRecord = new Dictionary<string, (long Records, long Fpi)>();
        var byRelation = new Dictionary<string, long>();
        while (await process.StandardOutput.ReadLineAsync(cancellationToken) is { } line)
        {
            var record = RecordLine().Match(line);
            if (!record.Success)
            {
                continue;
            }

            var type = $"{record.Groups["rmgr"].Value}/{record.Groups["desc"].Value}";
            long images = 0;
            foreach (Match block in BlockReference().Matches(line))
            {
                if (block.Groups["fpw"].Success)
                {
                    images++;
                    var relation = names.GetValueOrDefault(uint.Parse(block.Groups["node"].Value, System.Globalization.CultureInfo.InvariantCulture), "(a relation dropped since, or a catalog)");
                    var fork = block.Groups["fork"].Success ? $" ({block.Groups["fork"].Value})" : "";
                    byRelation[relation + fork] = byRelation.GetValueOrDefault(relation + fork) + 1;
                }
            }

            var (records, fpi) = byRecord.GetValueOrDefault(type);
            byRecord[type] = (records + 1, fpi + images);
        }

        await process.WaitForExitAsync(cancellationToken);
        // pg_waldump ends with an error at the range's last, still-open record page; it is only fatal before any record.
        if (byRecord.Count == 0)
        {
            throw new InvalidOperationException($"pg_waldump read no record between {from} and {to}: {await errors}");
        }

        var bytes = await Baselines.ScalarAsync<long>(connection, $"SELECT pg_wal_lsn_diff('{to}', '{from}')::bigint", cancellationToken);
        return new WalProfile(from, to,
            [.. byRecord.Select(r => new Line(r.Key, r.Value.Records, r.Value.Fpi)).OrderByDescending(l => l.FullPageImages).ThenByDescending(l => l.Records)],
            [.. byRelation.Select(r => new Line(r.Key, 0, r.Value)).OrderByDescending(l => l.FullPageImages)])
        {
            Total = new WalSpent(byRecord.Values.Sum(r => r.Records), byRecord.Values.Sum(r => r.Fpi), bytes),
        };
    }

    /// <summary>Every relation's file node with the name it is reported under: a partition's its partitioned table's or index's, "(heap)" or "(index)".</summary>
    private static async Task<Dictionary<uint, string>> RelationNamesAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var names = new Dictionary<uint, string>();
        await using var command = new NpgsqlCommand(
            """
            SELECT pg_relation_filenode(c.oid)::oid, coalesce(pg_partition_root(c.oid), c.oid)::regclass::text,
                   CASE WHEN c.relkind IN ('i', 'I') THEN 'index' WHEN c.relkind = 't' THEN 'toast' ELSE 'heap' END
              FROM pg_class c
             WHERE pg_relation_filenode(c.oid) IS NOT NULL
            """, connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var kind = reader.GetString(2);
            names[reader.GetFieldValue<uint>(0)] = kind == "heap" ? reader.GetString(1) : $"{reader.GetString(1)} ({kind})";
        }

        return names;
    }

    [GeneratedRegex(@"^rmgr: (?<rmgr>\w+)\s.*?desc: (?<desc>[A-Z_+0-9]+)")]
    private static partial Regex RecordLine();

    [GeneratedRegex(@"blkref #\d+: rel \d+/\d+/(?<node>\d+)(?: fork (?<fork>\w+))? blk \d+(?<fpw> FPW)?")]
    private static partial Regex BlockReference();
}
