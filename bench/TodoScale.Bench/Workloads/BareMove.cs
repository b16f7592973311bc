using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;
using TodoScale.Data.Schema;

namespace TodoScale.Bench.Workloads;

/// <summary>What the server wrote while a move ran (pg_stat_wal), per row moved.</summary>
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

/// <summary>The bare move of the rows the archiver's pass moved, and what each of the two wrote.</summary>
public sealed record BareMoveResult(long Rows, double Seconds, int Batches, int Workers, WalSpent Wal, WalSpent ArchiverWal)
{
    public double RowsPerSecond => Rows / Seconds;
}

/// <summary>
/// The archiver's yardstick (workload 3): the very rows the pass on its own moved, put back where they were (untimed),
/// then moved again by the least a move can do: per hash partition, batches of the archiver's size, each one
/// transaction of DELETE .. RETURNING into INSERT into todos_archived, no subtree rule, no triggers or foreign-key
/// checks (session_replication_role = replica), the same tables and indexes, one worker per core taking whole
/// partitions as the archiver's workers do. Both moves start from a checkpoint (so each pays its own full-page
/// images) and the WAL each wrote is read from pg_stat_wal. The archiver's time includes its ANALYZE of what it
/// changed; the bare move has none.
/// </summary>
public static class BareMove
{
    private const string Columns = TodoColumns.Todo;
    private const string SetTable = "bench_bare_move";
    private const string BatchTable = "bench_bare_move_batches";

    /// <summary>Before the pass: a checkpoint, and where the clock and the WAL counters stand.</summary>
    public static async Task<(DateTimeOffset Since, WalSpent Wal)> MarkAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await Baselines.ExecuteAsync(connection, "CHECKPOINT", cancellationToken);
        var since = await Baselines.ScalarAsync<DateTime>(connection, "SELECT clock_timestamp()", cancellationToken);
        return (new DateTimeOffset(since, TimeSpan.Zero), await WalSpent.ReadAsync(connection, cancellationToken));
    }

    public static async Task<BareMoveResult> RunAsync(
        BenchStack stack, (DateTimeOffset Since, WalSpent Wal) mark, long archiverRows, int batchSize, int workers, CancellationToken cancellationToken)
    {
        await using var connection = stack.OpenPrimary("todoscale-bench-bare-move");
        var archiverWal = await WalSpent.ReadAsync(connection, cancellationToken) - mark.Wal;

        // Untimed: the pass's rows put back exactly as they were, noted, and numbered in batches per hash partition.
        await Baselines.ExecuteAsync(connection, $"DROP TABLE IF EXISTS {SetTable}, {BatchTable}; CREATE UNLOGGED TABLE {SetTable} (user_id uuid, id uuid)", cancellationToken);
        await using (var back = await connection.BeginTransactionAsync(cancellationToken))
        {
            await using var command = new NpgsqlCommand(
                $"""
                SET LOCAL session_replication_role = replica;
                WITH back AS (DELETE FROM todos_archived WHERE archived_at >= @since RETURNING {Columns}),
                     put AS (INSERT INTO todos_active ({Columns}) SELECT {Columns} FROM back RETURNING user_id, id)
                INSERT INTO {SetTable} SELECT user_id, id FROM put
                """, connection, back) { CommandTimeout = 0 };
            command.Parameters.AddWithValue("since", mark.Since);
            var restored = await command.ExecuteNonQueryAsync(cancellationToken);
            if (restored != archiverRows)
            {
                throw new InvalidOperationException($"the pass moved {archiverRows:N0} todos but {restored:N0} were archived since {mark.Since:O}");
            }

            await back.CommitAsync(cancellationToken);
        }

        await Baselines.ExecuteAsync(connection, $"""
            CREATE UNLOGGED TABLE {BatchTable} AS
            SELECT t.tableoid::regclass::text AS partition,
                   ((row_number() OVER (PARTITION BY t.tableoid ORDER BY t.user_id, t.id) - 1) / {batchSize})::int AS batch, t.user_id, t.id
              FROM todos_active t JOIN {SetTable} m USING (user_id, id);
            CREATE INDEX ON {BatchTable} (partition, batch);
            ANALYZE {BatchTable};
            """, cancellationToken);
        await Baselines.ExecuteAsync(connection, "VACUUM ANALYZE todos_active, todos_archived", cancellationToken);
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
        var walBefore = await WalSpent.ReadAsync(connection, cancellationToken);

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
        var wal = await WalSpent.ReadAsync(connection, cancellationToken) - walBefore;
        await Baselines.ExecuteAsync(connection, $"DROP TABLE {SetTable}, {BatchTable}", cancellationToken);
        if (moved.Sum() != archiverRows)
        {
            throw new InvalidOperationException($"the bare move moved {moved.Sum():N0} todos, the pass {archiverRows:N0}");
        }

        return new BareMoveResult(moved.Sum(), seconds, batches, parallel, wal, archiverWal);
    }
}
