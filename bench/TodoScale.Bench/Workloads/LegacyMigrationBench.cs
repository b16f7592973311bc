using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Bench.Data;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Stack;
using TodoScale.Data.Legacy;
using TodoScale.Testing;

namespace TodoScale.Bench.Workloads;

/// <summary>The legacy application's single-row inserts into `todos` over one window.</summary>
public sealed record InsertRun(string Name, long Inserts, double Seconds, double P50Ms, double P99Ms, double MaxMs)
{
    public double PerSecond => Inserts / Seconds;
}

/// <summary>One `legacy` verb run under the insert load: its summary line, how long it took, and the longest insert meanwhile.</summary>
public sealed record VerbUnderLoad(string Verb, string Line, double Seconds, double LongestInsertMs, double BaselineMaxMs);

public sealed record LegacyBenchResult(
    long Rows, TimeSpan Generated, int Writers, InsertRun TriggerOff, InsertRun TriggerOn, VerbUnderLoad Start, VerbUnderLoad Switch,
    string BackfillLine, double BackfillRowsPerSecond, string ValidateLine, string FinalizeLine, TimeSpan Elapsed);

/// <summary>
/// The migration from `todos` measured on the benchmark's stack (primary + streaming replica, durable commits), with
/// the operators' CLI as a process as an operator runs it: the legacy table generated at <see cref="BenchScale.LegacyRows"/>;
/// the legacy application's insert throughput (8 connections, one row per transaction) with the dual-write trigger
/// off, then on; the longest insert while `legacy start` and `legacy switch` run; the backfill's rows/s on its own;
/// validate; finalize.
/// </summary>
public static partial class LegacyMigrationBench
{
    private const int Writers = 8;

    public static async Task<LegacyBenchResult> RunAsync(BenchStack stack, BenchScale scale, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        await using var db = stack.OpenPrimary();
        var users = (int)Math.Max(100, scale.LegacyRows / 100);
        say($"generating todos: {scale.LegacyRows:N0} rows for {users:N0} users (trees of 4: a root, two subtasks, one below)");
        var generated = await GenerateAsync(db, scale.LegacyRows, users, cancellationToken);
        say($"  generated in {generated.TotalSeconds:0.0} s");

        var run = TimeSpan.FromSeconds(scale.Name == "tiny" ? 2 : 15);
        await using var load = new InsertLoad(stack, users);
        var off = await load.MeasureAsync("trigger off", run, cancellationToken);
        say($"  inserts, trigger off: {off.PerSecond:N0}/s, p99 {off.P99Ms:0.00} ms");
        var start = await load.DuringAsync("legacy start", stack, cancellationToken);
        say($"  {start.Line} ({start.Seconds:0.0} s; longest insert meanwhile {start.LongestInsertMs:0.0} ms)");
        var on = await load.MeasureAsync("trigger on", run, cancellationToken);
        say($"  inserts, trigger on: {on.PerSecond:N0}/s, p99 {on.P99Ms:0.00} ms ({on.PerSecond / off.PerSecond - 1:+0%;-0%})");
        await load.StopAsync();

        var backfill = await OperatorCli.SummaryAsync(stack.PrimaryConnectionString, ["legacy", "backfill"], "legacy backfill: read", cancellationToken);
        say($"  {backfill}");
        var rate = double.Parse(BackfillRate().Match(backfill).Groups["rate"].Value.Replace(",", "", StringComparison.Ordinal), CultureInfo.InvariantCulture);
        var validate = await OperatorCli.SummaryAsync(stack.PrimaryConnectionString, ["legacy", "validate"], "legacy validate:", cancellationToken);
        say($"  {validate}");

        await using var again = new InsertLoad(stack, users);
        await again.MeasureAsync("warm-up", TimeSpan.FromSeconds(1), cancellationToken);
        var switched = await again.DuringAsync("legacy switch", stack, cancellationToken);
        say($"  {switched.Line} ({switched.Seconds:0.0} s; longest insert meanwhile {switched.LongestInsertMs:0.0} ms)");
        await again.StopAsync();
        var finalize = await OperatorCli.SummaryAsync(stack.PrimaryConnectionString, ["legacy", "finalize", "--force"], "legacy finalize:", cancellationToken);
        say($"  {finalize}");
        return new LegacyBenchResult(scale.LegacyRows, generated, Writers, off, on, start, switched, backfill, rate, validate, finalize, clock.Elapsed);
    }

    /// <summary>
    /// `todos` as the original design had it: trees of four (a root, two subtasks, a subtask of the first), 60%
    /// finished, spread over the users, written in chunks of a million rows; written as real applications write, with
    /// values the migration's rules take: a status in another spelling on one row in ten ('Done', ' done ',
    /// 'In Progress') or NULL on one in twenty of the open ones, a NULL priority on one row in 25, a NULL depth on one in 30.
    /// </summary>
    private static async Task<TimeSpan> GenerateAsync(NpgsqlConnection db, long rows, int users, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        await Baselines.ExecuteAsync(db, LegacyTable.CreateTable, cancellationToken);
        for (long from = 0; from < rows; from += 1_000_000)
        {
            var to = Math.Min(rows, from + 1_000_000) - 1;
            await Baselines.ExecuteAsync(db,
                $"""
                INSERT INTO todos (id, user_id, parent_todo_id, title, description, status, priority, due_date, completed_at, depth, created_at, updated_at)
                SELECT md5('t' || i)::uuid, md5('u' || (i / 4) % {users})::uuid,
                       CASE i % 4 WHEN 0 THEN NULL WHEN 3 THEN md5('t' || (i - 2))::uuid ELSE md5('t' || (i - i % 4))::uuid END,
                       'todo ' || i, CASE WHEN i % 3 = 0 THEN 'notes for ' || i END,
                       CASE WHEN (i / 4) % 10 < 6 THEN (CASE i % 20 WHEN 1 THEN 'Done' WHEN 2 THEN ' done ' ELSE 'done' END)
                            ELSE (CASE i % 20 WHEN 1 THEN NULL WHEN 2 THEN 'In Progress' ELSE 'todo' END) END,
                       CASE WHEN i % 25 = 0 THEN NULL ELSE 1 + i % 5 END,
                       CASE WHEN i % 7 = 0 THEN now() + make_interval(days => (i % 90)::int) END,
                       CASE WHEN (i / 4) % 10 < 6 THEN now() - make_interval(days => ((i / 4) % 700)::int) END,
                       CASE WHEN i % 30 = 0 THEN NULL ELSE (CASE i % 4 WHEN 0 THEN 0 WHEN 3 THEN 2 ELSE 1 END) END,
                       now() - make_interval(days => ((i / 4) % 700)::int + 3), now() - make_interval(days => ((i / 4) % 700)::int)
                  FROM generate_series({from}::bigint, {to}::bigint) i
                """, cancellationToken);
        }

        await Baselines.ExecuteAsync(db, "VACUUM ANALYZE todos", cancellationToken);
        return clock.Elapsed;
    }

    /// <summary>The legacy application: <see cref="Writers"/> connections, each inserting one root per transaction, timed.</summary>
    private sealed class InsertLoad : IAsyncDisposable
    {
        private readonly List<(long Started, long Ended)>[] _inserts;
        private readonly Task[] _writers;
        private readonly CancellationTokenSource _stop = new();

        public InsertLoad(BenchStack stack, int users)
        {
            _inserts = [.. Enumerable.Range(0, Writers).Select(_ => new List<(long, long)>(1 << 16))];
            _writers = [.. Enumerable.Range(0, Writers).Select(w => Task.Run(() => WriteAsync(stack, users, w, _stop.Token)))];
        }

        /// <summary>Throughput and latency of the inserts that started in the next <paramref name="window"/>.</summary>
        public async Task<InsertRun> MeasureAsync(string name, TimeSpan window, CancellationToken cancellationToken)
        {
            var from = Stopwatch.GetTimestamp();
            await Task.Delay(window, cancellationToken);
            var to = Stopwatch.GetTimestamp();
            var latencies = Between(from, to).Select(i => Stopwatch.GetElapsedTime(i.Started, i.Ended).TotalMilliseconds).Order().ToArray();
            return latencies.Length == 0
                ? throw new InvalidOperationException("no insert completed in the window")
                : new InsertRun(name, latencies.Length, Stopwatch.GetElapsedTime(from, to).TotalSeconds,
                    latencies[latencies.Length / 2], latencies[(int)(latencies.Length * 0.99)], latencies[^1]);
        }

        /// <summary>Runs a verb while the inserts go on; the longest insert overlapping it against the longest in as long a window before.</summary>
        public async Task<VerbUnderLoad> DuringAsync(string verb, BenchStack stack, CancellationToken cancellationToken)
        {
            var baselineFrom = Stopwatch.GetTimestamp();
            await Task.Delay(TimeSpan.FromSeconds(2), cancellationToken);
            var from = Stopwatch.GetTimestamp();
            var line = await OperatorCli.SummaryAsync(stack.PrimaryConnectionString, verb.Split(' '), verb + ":", cancellationToken);
            var to = Stopwatch.GetTimestamp();
            await Task.Delay(TimeSpan.FromMilliseconds(500), cancellationToken);
            var baseline = Between(baselineFrom, from).Select(i => Stopwatch.GetElapsedTime(i.Started, i.Ended).TotalMilliseconds).DefaultIfEmpty(0).Max();
            var longest = Overlapping(from, to).Select(i => Stopwatch.GetElapsedTime(i.Started, i.Ended).TotalMilliseconds).DefaultIfEmpty(0).Max();
            return new VerbUnderLoad(verb, line, Stopwatch.GetElapsedTime(from, to).TotalSeconds, longest, baseline);
        }

        public async Task StopAsync()
        {
            await _stop.CancelAsync();
            await Task.WhenAll(_writers);
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await StopAsync();
            }

            _stop.Dispose();
        }

        private IEnumerable<(long Started, long Ended)> Between(long from, long to) =>
            Snapshot().Where(i => i.Started >= from && i.Started < to);

        private IEnumerable<(long Started, long Ended)> Overlapping(long from, long to) =>
            Snapshot().Where(i => i.Ended >= from && i.Started <= to);

        private List<(long Started, long Ended)> Snapshot()
        {
            var all = new List<(long, long)>();
            foreach (var inserts in _inserts)
            {
                lock (inserts)
                {
                    all.AddRange(inserts);
                }
            }

            return all;
        }

        private async Task WriteAsync(BenchStack stack, int users, int writer, CancellationToken stop)
        {
            await using var connection = stack.OpenPrimary("bench-legacy-writer");
            await using var insert = new NpgsqlCommand("INSERT INTO todos (id, user_id, title) VALUES ($1, $2, 'inserted by the legacy application')", connection);
            insert.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            insert.Parameters.Add(new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid });
            await insert.PrepareAsync(stop);
            var random = new Random(writer);
            var userIds = Enumerable.Range(0, 1000).Select(_ => UserId(random.Next(users))).ToArray();
            while (!stop.IsCancellationRequested)
            {
                ((NpgsqlParameter<Guid>)insert.Parameters[0]).TypedValue = Guid.CreateVersion7();
                ((NpgsqlParameter<Guid>)insert.Parameters[1]).TypedValue = userIds[random.Next(userIds.Length)];
                var started = Stopwatch.GetTimestamp();
                try
                {
                    await insert.ExecuteNonQueryAsync(stop);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }

                var ended = Stopwatch.GetTimestamp();
                lock (_inserts[writer])
                {
                    _inserts[writer].Add((started, ended));
                }
            }
        }

        /// <summary>The generator's user ids: md5('u' || n)::uuid.</summary>
        private static Guid UserId(int n)
        {
            var hash = System.Security.Cryptography.MD5.HashData(Encoding.ASCII.GetBytes($"u{n}"));
            return Guid.Parse(Convert.ToHexString(hash));
        }
    }

    [GeneratedRegex(@"\((?<rate>[0-9,]+) rows/s\)")]
    private static partial Regex BackfillRate();
}
