using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;
using TodoScale.Testing;

namespace TodoScale.Bench.Workloads;

/// <summary>Latency of the writes in one window: every write's, not a sample.</summary>
public sealed record WriteWindow(string Name, long Writes, long Failures, double Seconds, double P50Ms, double P99Ms, double MaxMs)
{
    public double PerSecond => Writes / Seconds;
}

public sealed record SplitBenchResult(
    long Rows, long AiRows, int Users, TimeSpan Generated, int Writers, WriteWindow Before, WriteWindow During, WriteWindow After,
    string SplitLine, double SplitSeconds, long RowsAfter, long RowsExpected, TimeSpan Elapsed);

/// <summary>
/// `partitions split --to 32` on <see cref="BenchScale.LegacyRows"/> active todos (plus one AI interaction per ten
/// todos) under a steady write load: <see cref="Writers"/> connections as the API's role, each transaction setting
/// app.user_id and inserting a root or renaming an existing todo, as fast as they can. Every write's start and end
/// is kept; the longest write overlapping the split is the longest any write was blocked by it.
/// </summary>
public static class SplitBench
{
    private const int Writers = 8;

    public static async Task<SplitBenchResult> RunAsync(BenchStack stack, BenchScale scale, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        await using var db = stack.OpenPrimary();
        var rows = scale.LegacyRows;
        var users = (int)Math.Max(100, rows / 100);
        say($"generating todos_active: {rows:N0} rows for {users:N0} users (trees of four), and ai_interactions");
        var generated = Stopwatch.StartNew();
        await GenerateAsync(db, rows, users, cancellationToken);
        var aiRows = await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM ai_interactions", cancellationToken);
        generated.Stop();
        say($"  generated in {generated.Elapsed.TotalSeconds:0.0} s");

        var load = new WriteLoad(stack, users, rows);
        var window = TimeSpan.FromSeconds(scale.Name == "tiny" ? 2 : 10);
        await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken); // connections open, statements prepared
        var before = await load.MeasureAsync("before the split", window, cancellationToken);
        say($"  writes before: {before.PerSecond:N0}/s, p99 {before.P99Ms:0.00} ms, max {before.MaxMs:0.0} ms");
        var from = Stopwatch.GetTimestamp();
        var line = await OperatorCli.SummaryAsync(stack.PrimaryConnectionString, ["partitions", "split", "--to", "32"], "partitions split:", cancellationToken);
        var to = Stopwatch.GetTimestamp();
        say($"  {line}");
        var during = load.Overlapping("during the split", from, to);
        say($"  writes during: {during.PerSecond:N0}/s, p99 {during.P99Ms:0.00} ms, longest {during.MaxMs:0.0} ms, {during.Failures} failed");
        var after = await load.MeasureAsync("after the split", window, cancellationToken);
        say($"  writes after: {after.PerSecond:N0}/s, p99 {after.P99Ms:0.00} ms, max {after.MaxMs:0.0} ms");
        var inserted = await load.StopAsync();

        var rowsAfter = await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active", cancellationToken);
        say($"  todos_active holds {rowsAfter:N0} rows: {rows:N0} generated + {inserted:N0} inserted by the writers");
        return new SplitBenchResult(rows, aiRows, users, generated.Elapsed, Writers, before, during, after, line,
            Stopwatch.GetElapsedTime(from, to).TotalSeconds, rowsAfter, rows + inserted, clock.Elapsed);
    }

    /// <summary>
    /// Trees of four (a root, two subtasks, one below the first), 30% finished in the last 10 days (so the archiver's
    /// service leaves them), written with row triggers off (depth given) in chunks of a million; then VACUUM ANALYZE.
    /// </summary>
    private static async Task GenerateAsync(NpgsqlConnection db, long rows, int users, CancellationToken cancellationToken)
    {
        for (long from = 0; from < rows; from += 1_000_000)
        {
            var to = Math.Min(rows, from + 1_000_000) - 1;
            await Baselines.ExecuteAsync(db,
                $"""
                BEGIN;
                SET LOCAL session_replication_role = replica;
                INSERT INTO todos_active (id, user_id, parent_todo_id, title, description, status, priority, due_date, completed_at, depth, created_at, updated_at)
                SELECT md5('t' || i)::uuid, md5('u' || (i / 4) % {users})::uuid,
                       CASE i % 4 WHEN 0 THEN NULL WHEN 3 THEN md5('t' || (i - 2))::uuid ELSE md5('t' || (i - i % 4))::uuid END,
                       'todo ' || i, CASE WHEN i % 3 = 0 THEN 'notes for ' || i END,
                       CASE WHEN (i / 4) % 10 < 3 THEN 'done' ELSE 'todo' END, 1 + i % 5,
                       CASE WHEN i % 7 = 0 THEN now() + make_interval(days => (i % 90)::int) END,
                       CASE WHEN (i / 4) % 10 < 3 THEN now() - make_interval(days => ((i / 4) % 10)::int) END,
                       CASE i % 4 WHEN 0 THEN 0 WHEN 3 THEN 2 ELSE 1 END,
                       now() - make_interval(days => ((i / 4) % 700)::int + 3), now() - make_interval(days => ((i / 4) % 10)::int)
                  FROM generate_series({from}::bigint, {to}::bigint) i;
                INSERT INTO ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at)
                SELECT md5('u' || (i / 4) % {users})::uuid, md5('a' || i)::uuid, md5('t' || i)::uuid, 'subtasks', 'bench-model',
                       'break down todo ' || i, 'three steps for ' || i, 40, 120, 900, now() - make_interval(days => ((i / 4) % 60)::int)
                  FROM generate_series({from}::bigint, {to}::bigint) i WHERE i % 10 = 0;
                COMMIT;
                """, cancellationToken);
        }

        await Baselines.ExecuteAsync(db, "VACUUM ANALYZE todos_active", cancellationToken);
        await Baselines.ExecuteAsync(db, "VACUUM ANALYZE ai_interactions", cancellationToken);
    }

    /// <summary>The API's writes: <see cref="Writers"/> connections as todoscale_app, one transaction per write, timed.</summary>
    private sealed class WriteLoad
    {
        private readonly List<(long Started, long Ended, bool Failed)>[] _writes;
        private readonly Task<long>[] _writers;
        private readonly CancellationTokenSource _stop = new();

        public WriteLoad(BenchStack stack, int users, long rows)
        {
            _writes = [.. Enumerable.Range(0, Writers).Select(_ => new List<(long, long, bool)>(1 << 18))];
            _writers = [.. Enumerable.Range(0, Writers).Select(w => Task.Run(() => WriteAsync(stack, users, rows, w, _stop.Token)))];
        }

        public async Task<WriteWindow> MeasureAsync(string name, TimeSpan window, CancellationToken cancellationToken)
        {
            var from = Stopwatch.GetTimestamp();
            await Task.Delay(window, cancellationToken);
            var to = Stopwatch.GetTimestamp();
            return Window(name, from, to, Snapshot().Where(w => w.Started >= from && w.Started < to));
        }

        /// <summary>Every write that overlapped [from, to]: a write the split blocked ends after the block.</summary>
        public WriteWindow Overlapping(string name, long from, long to) =>
            Window(name, from, to, Snapshot().Where(w => w.Ended >= from && w.Started <= to));

        /// <summary>Stops the writers; returns the roots they inserted.</summary>
        public async Task<long> StopAsync()
        {
            await _stop.CancelAsync();
            return (await Task.WhenAll(_writers)).Sum();
        }

        private static WriteWindow Window(string name, long from, long to, IEnumerable<(long Started, long Ended, bool Failed)> writes)
        {
            var list = writes.ToList();
            var latencies = list.Select(w => Stopwatch.GetElapsedTime(w.Started, w.Ended).TotalMilliseconds).Order().ToArray();
            return latencies.Length == 0
                ? throw new InvalidOperationException($"no write completed {name}")
                : new WriteWindow(name, latencies.Length, list.Count(w => w.Failed), Stopwatch.GetElapsedTime(from, to).TotalSeconds,
                    latencies[latencies.Length / 2], latencies[(int)(latencies.Length * 0.99)], latencies[^1]);
        }

        private List<(long Started, long Ended, bool Failed)> Snapshot()
        {
            var all = new List<(long, long, bool)>();
            foreach (var writes in _writes)
            {
                lock (writes)
                {
                    all.AddRange(writes);
                }
            }

            return all;
        }

        private async Task<long> WriteAsync(BenchStack stack, int users, long rows, int writer, CancellationToken stop)
        {
            var builder = new NpgsqlConnectionStringBuilder(stack.PrimaryConnectionString) { ApplicationName = "bench-split-writer", Options = "-c role=todoscale_app" };
            await using var connection = new NpgsqlConnection(builder.ConnectionString);
            await connection.OpenAsync(stop);
            await using var insert = new NpgsqlCommand("INSERT INTO todos_active (id, user_id, title) VALUES ($1, $2, 'written during the split')", connection);
            insert.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            insert.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            await using var rename = new NpgsqlCommand("UPDATE todos_active SET title = 'renamed during the split' WHERE user_id = $1 AND id = $2", connection);
            rename.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            rename.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            var random = new Random(writer);
            long inserted = 0;
            while (!stop.IsCancellationRequested)
            {
                // Half new roots, half renames of a generated todo (row locks the split's copy also takes).
                var i = (long)(random.NextDouble() * rows);
                var user = Md5Uuid($"u{i / 4 % users}");
                var isInsert = random.Next(2) == 0;
                var command = isInsert ? insert : rename;
                ((NpgsqlParameter<Guid>)command.Parameters[0]).TypedValue = isInsert ? Guid.CreateVersion7() : user;
                ((NpgsqlParameter<Guid>)command.Parameters[1]).TypedValue = isInsert ? user : Md5Uuid($"t{i}");
                var started = Stopwatch.GetTimestamp();
                var failed = false;
                try
                {
                    // Not cancelled midway: a write the stop interrupted would leave the count of inserted roots unsure.
                    await using var transaction = await connection.BeginTransactionAsync(CancellationToken.None);
                    await using (var tenant = new NpgsqlCommand($"SET LOCAL app.user_id = '{user}'", connection, transaction))
                    {
                        await tenant.ExecuteNonQueryAsync(CancellationToken.None);
                    }

                    command.Transaction = transaction;
                    await command.ExecuteNonQueryAsync(CancellationToken.None);
                    await transaction.CommitAsync(CancellationToken.None);
                    inserted += isInsert ? 1 : 0;
                }
                catch (NpgsqlException)
                {
                    failed = true;
                }

                var ended = Stopwatch.GetTimestamp();
                lock (_writes[writer])
                {
                    _writes[writer].Add((started, ended, failed));
                }
            }

            return inserted;
        }

        /// <summary>The generator's ids: md5(text)::uuid.</summary>
        private static Guid Md5Uuid(string text) => Guid.Parse(Convert.ToHexString(MD5.HashData(Encoding.ASCII.GetBytes(text))));
    }
}
