using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;
using TodoScale.Data.Schema;

namespace TodoScale.Bench.Workloads;

/// <summary>What the server wrote: records, full-page images and bytes, in total (pg_stat_wal's counters, or a <see cref="WalProfile"/>'s).</summary>
public sealed record WalSpent(long Records, long FullPageImages, long Bytes)
{
    public static async Task<WalSpent> ReadAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT wal_records, wal_fpi, wal_bytes::bigint FROM pg_stat_wal", connection);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new WalSpent(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    public static WalSpent operator -(WalSpent after, WalSpent before) =>
        new(after.Records - before.Records, after.FullPageImages - before.FullPageImages, after.Bytes - before.Bytes);
}

/// <summary>
/// The bare move of the rows the archiver's first pass moved, the WAL it and the first pass wrote, and the
/// archiver's second pass over the same rows put back the same way (<see cref="Again"/>, with its WAL): the
/// like-for-like pair.
/// </summary>
public sealed record BareMoveResult(long Rows, double Seconds, int Batches, int Workers, long Pages, WalProfile Wal, WalProfile FirstPassWal)
{
    public double RowsPerSecond => Rows / Seconds;

    public ArchiveResult? Again { get; init; }

    public WalProfile? AgainWal { get; init; }

    /// <summary>The heap pages the rows sat on when the archiver's second pass began.</summary>
    public long AgainPages { get; init; }
}

/// <summary>
/// The archiver's yardstick (workload 3): the very rows the pass on its own moved, put back into the room they left
/// (untimed), then moved again by the least a move can do: per hash partition, batches of the archiver's size, each
/// one transaction of DELETE .. RETURNING into INSERT into todos_archived, no subtree rule, no row triggers or
/// foreign-key checks (session_replication_role = replica; the tuple lock a BEFORE DELETE trigger's presence costs
/// remains, as for the archiver), the same tables and indexes, one worker per core taking whole partitions as the
/// archiver's workers do. Both moves start from a checkpoint (so each pays its own full-page images); the WAL each
/// wrote is read from pg_stat_wal and, by record type and relation, with pg_waldump (<see cref="WalProfile"/>). The
/// archiver's time includes its ANALYZE of what it changed; the bare move has none.
/// </summary>
public static class BareMove
{
    private const string Columns = TodoColumns.Todo;
    private const string BatchTable = "bench_bare_move_batches";

    /// <summary>Before the pass: a checkpoint, and where the clock and the WAL stand.</summary>
    public static async Task<(DateTimeOffset Since, WalMark Wal)> MarkAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await Baselines.ExecuteAsync(connection, "CHECKPOINT", cancellationToken);
        var since = await Baselines.ScalarAsync<DateTime>(connection, "SELECT clock_timestamp()", cancellationToken);
        return (new DateTimeOffset(since, TimeSpan.Zero), await WalMark.ReadAsync(connection, cancellationToken));
    }

    public static async Task<BareMoveResult> RunAsync(
        BenchStack stack, (DateTimeOffset Since, WalMark Wal) mark, long archiverRows, int batchSize, int workers, CancellationToken cancellationToken)
    {
        await using var connection = stack.OpenPrimary("todoscale-bench-bare-move");
        var archiverWal = await WalProfile.ReadAsync(connection, mark.Wal, cancellationToken);

        // Untimed: the pass's rows put back into the room they left, and numbered in batches per hash partition.
        var pages = await PutBackAsync(connection, mark.Since, archiverRows, BatchTable, batchSize, cancellationToken);
        await VacuumAsync(connection, "ANALYZE todos_active, todos_archived", cancellationToken);
        var queue = new ConcurrentQueue<(string Partition, int[] Batches)>();
        await using (var command = new NpgsqlCommand($"SELECT partition, array_agg(DISTINCT batch ORDER BY batch) FROM {BatchTable} GROUP BY partition ORDER BY count(*) DESC", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                queue.Enqueue((reader.GetString(0), reader.GetFieldValue<int[]>(1)));
            }
        }

        var batches = queue.Sum(p => p.Batches.Length);
        var parallel = Math.Max(1, Math.Min(workers, queue.Count));
        await Baselines.ExecuteAsync(connection, "CHECKPOINT", cancellationToken);
        var walBefore = await WalMark.ReadAsync(connection, cancellationToken);

        // Timed: the move itself.
        var clock = Stopwatch.StartNew();
        var moved = await Task.WhenAll(Enumerable.Range(0, parallel).Select(worker => Task.Run(async () =>
        {
            await using var own = stack.OpenPrimary($"todoscale-bench-bare-move-{worker}");
            long rows = 0;
            while (queue.TryDequeue(out var work))
            {
                foreach (var batch in work.Batches)
                {
                    await using var transaction = await own.BeginTransactionAsync(cancellationToken);
                    await using var command = new NpgsqlCommand(
                        $"""
                        SET LOCAL session_replication_role = replica;
                        WITH moved AS (
                            DELETE FROM {work.Partition} t USING {BatchTable} b
                             WHERE b.partition = @partition AND b.batch = @batch AND t.user_id = b.user_id AND t.id = b.id
                            RETURNING {TodoColumns.Qualified(Columns, "t")})
                        INSERT INTO todos_archived ({Columns}, archived_at) SELECT {Columns}, now() FROM moved
                        """, own, transaction);
                    command.Parameters.AddWithValue("partition", work.Partition);
                    command.Parameters.AddWithValue("batch", batch);
                    rows += await command.ExecuteNonQueryAsync(cancellationToken);
                    await transaction.CommitAsync(cancellationToken);
                }
            }

            return rows;
        }, cancellationToken)));
        var seconds = clock.Elapsed.TotalSeconds;
        var wal = await WalProfile.ReadAsync(connection, walBefore, cancellationToken);
        await Baselines.ExecuteAsync(connection, $"DROP TABLE {BatchTable}", cancellationToken);
        if (moved.Sum() != archiverRows)
        {
            throw new InvalidOperationException($"the bare move moved {moved.Sum():N0} todos, the pass {archiverRows:N0}");
        }

        return new BareMoveResult(moved.Sum(), seconds, batches, parallel, pages, wal, archiverWal);
    }

    /// <summary>
    /// The archiver again, on the same rows put back the same way as for the bare move (into the room they left,
    /// then a VACUUM; from a checkpoint; with the same --older-than, so also the few todos that reached that age
    /// since the first pass): the comparison that leaves only what the archiver does beyond a bare move.
    /// </summary>
    public static async Task<BareMoveResult> ArchiverAgainAsync(
        BenchStack stack, DateTimeOffset since, BareMoveResult bare, string olderThan, CancellationToken cancellationToken)
    {
        await using var connection = stack.OpenPrimary("todoscale-bench-bare-move");
        var pages = await PutBackAsync(connection, since, bare.Rows, batchTable: null, batchSize: 0, cancellationToken);
        await VacuumAsync(connection, "ANALYZE todos_active, todos_archived", cancellationToken);
        var mark = await MarkAsync(connection, cancellationToken);
        var again = await ArchivePass.RunAsync(stack.PrimaryConnectionString, olderThan, cancellationToken);
        var wal = await WalProfile.ReadAsync(connection, mark.Wal, cancellationToken);
        // The cut-off is the archiver's clock less the duration, so the todos that turned that old in the minutes
        // between the passes come too: a handful, against thousands.
        if (again.Rows < bare.Rows || again.Rows > bare.Rows + Math.Max(100, bare.Rows / 100))
        {
            throw new InvalidOperationException($"the second pass moved {again.Rows:N0} todos, the first {bare.Rows:N0}");
        }

        return bare with { Again = again, AgainWal = wal, AgainPages = pages };
    }

    /// <summary>
    /// VACUUM once every row deleted so far is dead to all: the replica's hot_standby_feedback holds the primary's
    /// horizon (its slot's xmin) up to a status interval behind, and a VACUUM inside it keeps what a move just
    /// deleted (so the rows put back would not find the room it left). Waits for the slots' xmin to pass the
    /// current transaction id, as the catalog shows it, at most a minute.
    /// </summary>
    private static async Task VacuumAsync(NpgsqlConnection connection, string what, CancellationToken cancellationToken)
    {
        var xid = await Baselines.ScalarAsync<long>(connection, "SELECT pg_current_xact_id()::text::bigint % 4294967296", cancellationToken);
        var waited = Stopwatch.StartNew();
        while (await Baselines.ScalarAsync<long>(connection,
                   $"SELECT count(*) FROM pg_replication_slots WHERE xmin IS NOT NULL AND age(xmin) >= age('{xid}'::xid)", cancellationToken) > 0
               && waited.Elapsed < TimeSpan.FromMinutes(1))
        {
            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }

        await Baselines.ExecuteAsync(connection, $"VACUUM {what}", cancellationToken);
    }

    /// <summary>
    /// Every todo archived since <paramref name="since"/> put back into todos_active as it was (one statement, no
    /// triggers), checked against the count expected, and the number of heap pages they now sit on; with
    /// <paramref name="batchTable"/>, the rows put back are numbered in batches of <paramref name="batchSize"/> per
    /// hash partition, in key order.
    /// <para>
    /// A VACUUM first, so the rows go back into the room the move left (the free space map points the inserts there):
    /// spread over the partitions' pages as the archiver found them, one or two a page. Without it they would be
    /// appended together at each partition's end, on a twentieth of the pages, and the move that follows would
    /// take a full-page image of a twentieth as many pages: that, not the archiver's work, was most of the gap the
    /// bench once reported between the archiver and a bare move.
    /// </para>
    /// </summary>
    private static async Task<long> PutBackAsync(
        NpgsqlConnection connection, DateTimeOffset since, long expected, string? batchTable, int batchSize, CancellationToken cancellationToken)
    {
        const string setTable = "bench_put_back";
        await VacuumAsync(connection, "todos_active", cancellationToken);
        await Baselines.ExecuteAsync(connection, $"DROP TABLE IF EXISTS {setTable}; CREATE UNLOGGED TABLE {setTable} (user_id uuid, id uuid)", cancellationToken);
        await using (var back = await connection.BeginTransactionAsync(cancellationToken))
        {
            await using var command = new NpgsqlCommand(
                $"""
                SET LOCAL session_replication_role = replica;
                WITH back AS (DELETE FROM todos_archived WHERE archived_at >= @since RETURNING {Columns}),
                     put AS (INSERT INTO todos_active ({Columns}) SELECT {Columns} FROM back RETURNING user_id, id)
                INSERT INTO {setTable} SELECT user_id, id FROM put
                """, connection, back) { CommandTimeout = 0 };
            command.Parameters.AddWithValue("since", since);
            var restored = await command.ExecuteNonQueryAsync(cancellationToken);
            if (restored != expected)
            {
                throw new InvalidOperationException($"{expected:N0} todos were moved but {restored:N0} were archived since {since:O}");
            }

            await back.CommitAsync(cancellationToken);
        }

        if (batchTable is not null)
        {
            await Baselines.ExecuteAsync(connection, $"""
                DROP TABLE IF EXISTS {batchTable};
                CREATE UNLOGGED TABLE {batchTable} AS
                SELECT t.tableoid::regclass::text AS partition,
                       ((row_number() OVER (PARTITION BY t.tableoid ORDER BY t.user_id, t.id) - 1) / {batchSize})::int AS batch, t.user_id, t.id
                  FROM todos_active t JOIN {setTable} m USING (user_id, id);
                CREATE INDEX ON {batchTable} (partition, batch);
                ANALYZE {batchTable};
                """, cancellationToken);
        }

        var pages = await Baselines.ScalarAsync<long>(connection,
            $"SELECT count(DISTINCT (t.tableoid, (t.ctid::text::point)[0])) FROM todos_active t JOIN {setTable} m USING (user_id, id)", cancellationToken);
        await Baselines.ExecuteAsync(connection, $"DROP TABLE {setTable}", cancellationToken);
        return pages;
    }
}
