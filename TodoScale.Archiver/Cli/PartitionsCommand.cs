using System.CommandLine;
using Spectre.Console;
using TodoScale.Archiver.Partitions;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;

namespace TodoScale.Archiver.Cli;

/// <summary>`partitions status [--exact]`: rows, bytes, users, archive backlog and skew per partition, and the archive months.</summary>
internal static class PartitionsCommand
{
    public static Command Create()
    {
        var exact = new Option<bool>("--exact") { Description = "Count rows and distinct users (reads every partition) instead of using the statistics' estimates." };
        var indexes = new Option<bool>("--indexes") { Description = "Index usage instead: scans, index tuples read and size per index and partition, and the indexes no query has used." };
        var unusedAfter = new Option<string?>("--unused-after") { Description = "With --indexes: how long the statistics must have counted to call a never-scanned index unused (default Maintenance:UnusedIndexAfter, 14d)." };
        var status = new Command("status", "Rows, bytes, users and skew per partition of todos_active and ai_interactions, and per archive month; with --indexes, index usage.")
        {
            exact, indexes, unusedAfter,
        };
        status.SetAction((parseResult, cancellationToken) => parseResult.GetValue(indexes)
            ? IndexesAsync(parseResult.GetValue(unusedAfter), cancellationToken)
            : StatusAsync(parseResult.GetValue(exact), cancellationToken));

        var to = new Option<int>("--to") { Description = "The new number of hash partitions: a multiple of the current one (32, then 64).", Required = true };
        var batchSize = new Option<int?>("--batch-size") { Description = "Rows copied per batch (default Split:BatchSize, 5000)." };
        var split = new Command("split", "Online re-split of todos_active and ai_interactions to --to partitions, one old partition at a time; resumable after a kill.") { to, batchSize };
        split.SetAction((parseResult, cancellationToken) => SplitAsync(parseResult.GetValue(to), parseResult.GetValue(batchSize), cancellationToken));
        var addWorker = new Option<string[]>("--add-worker")
        {
            Description = "A new Citus worker (host:port) to add before the rebalance; repeatable. Without it, the shards are only evened out.",
            AllowMultipleArgumentsPerToken = false,
        };
        var rebalance = new Command("rebalance",
            "On Citus: add workers and move shard groups onto them online (Citus' rebalancer, logical replication). On one PostgreSQL: use `split`.") { addWorker };
        rebalance.SetAction((parseResult, cancellationToken) => RebalanceAsync(parseResult.GetValue(addWorker) ?? [], cancellationToken));
        return new Command("partitions", "The hash partitions of the active tables and the archive months.") { status, split, rebalance, DoctorCommand.Create() };
    }

    private static Task<int> SplitAsync(int to, int? batchSize, CancellationToken cancellationToken) => VerbRunner.RunAsync("partitions split", async () =>
    {
        var configuration = CliConfiguration.Load();
        var tools = OperatorTools.Load(configuration);
        var options = configuration.BindOptions<SplitOptions>(SplitOptions.Section, o => o.Errors(), o => o.BatchSize = batchSize ?? o.BatchSize);
        await using var owner = tools.OwnerDataSource();
        await using var archiver = tools.ArchiverRoleDataSource();
        var split = new PartitionSplit(owner, archiver, options, TimeProvider.System);
        SplitResult result;
        try
        {
            if (Console.IsOutputRedirected)
            {
                var last = 0L;
                result = await split.SplitAsync(to, Environment.UserName, new Progress<SplitProgress>(p =>
                {
                    var now = Environment.TickCount64;
                    if (p.Step != SplitStep.Copying || now - Interlocked.Exchange(ref last, now) >= 2_000)
                    {
                        Console.WriteLine($"partitions split: {p.Partition} {p.Step.Text()}, {p.Copied:N0} of about {p.Total:N0} rows; {p.Done} of {p.Of} partitions done");
                    }
                }), cancellationToken);
            }
            else
            {
                result = await AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RowsPerSecondColumn(), new RemainingTimeColumn())
                    .StartAsync(async context =>
                    {
                        var all = context.AddTask($"split to {to}");
                        var current = context.AddTask("partition");
                        var outcome = await split.SplitAsync(to, Environment.UserName, new Progress<SplitProgress>(p =>
                        {
                            all.MaxValue = Math.Max(p.Of, 1);
                            all.Value = p.Done;
                            current.Description = $"{p.Partition} {p.Step.Text()}";
                            current.MaxValue = Math.Max(p.Total, Math.Max(p.Copied, 1));
                            current.Value = p.Copied;
                        }), cancellationToken);
                        all.Value = all.MaxValue;
                        current.Value = current.MaxValue;
                        return outcome;
                    });
            }
        }
        catch (SplitRefusedException ex)
        {
            throw new CliException($"refused: {ex.Message}");
        }

        AnsiConsole.WriteLine(result.AlreadyDone
            ? $"partitions split: todos_active and ai_interactions already have {to} partitions"
            : $"partitions split: {result.PartitionsSplit} old partition(s) split to modulus {to}, {result.RowsCopied:N0} rows copied, {result.Elapsed.TotalSeconds:0.0} s; " +
              $"longest swap {result.LongestSwap.TotalMilliseconds:0} ms ({result.LongestSwapAttempts} attempt(s) at most)");
        return ExitCodes.Success;
    });

    private static Task<int> RebalanceAsync(string[] addWorkers, CancellationToken cancellationToken) => VerbRunner.RunAsync("partitions rebalance", async () =>
    {
        var workers = new List<(string Host, int Port)>();
        foreach (var worker in addWorkers)
        {
            var colon = worker.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(worker[(colon + 1)..], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var port)
                || port is < 1 or > 65535)
            {
                throw new CliException($"--add-worker {worker}: expected host:port, e.g. --add-worker 10.0.0.7:5432");
            }

            workers.Add((worker[..colon], port));
        }

        var tools = OperatorTools.Load();
        await using var owner = tools.OwnerDataSource();
        var rebalance = new CitusRebalance(owner, tools.ConnectionString, TimeProvider.System);
        RebalanceResult result;
        try
        {
            if (Console.IsOutputRedirected)
            {
                var last = (Done: -1L, At: 0L);
                result = await rebalance.RunAsync(workers, new Progress<RebalanceProgress>(p =>
                {
                    var now = Environment.TickCount64;
                    if (p.Done != last.Done || now - last.At >= 5_000)
                    {
                        last = (p.Done, now);
                        Console.WriteLine($"partitions rebalance: {p.Done} of {p.Total} shard-group moves done{(p.Moving is null ? "" : $"; moving: {p.Moving}")}");
                    }
                }), cancellationToken);
            }
            else
            {
                result = await AnsiConsole.Progress()
                    .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new ElapsedTimeColumn())
                    .StartAsync(async context =>
                    {
                        var moves = context.AddTask("shard-group moves", maxValue: 1);
                        var outcome = await rebalance.RunAsync(workers, new Progress<RebalanceProgress>(p =>
                        {
                            moves.MaxValue = Math.Max(p.Total, 1);
                            moves.Value = p.Done;
                        }), cancellationToken);
                        moves.Value = moves.MaxValue;
                        return outcome;
                    });
            }
        }
        catch (RebalanceRefusedException ex)
        {
            throw new CliException($"refused: {ex.Message}", ExitCodes.Failure);
        }

        AnsiConsole.WriteLine(
            $"partitions rebalance: {(result.Added.Count == 0 ? "no worker added" : $"added {string.Join(", ", result.Added)}")}; " +
            $"{result.Moves} shard-group move(s) in {result.Elapsed.TotalSeconds:0.0} s; shards per worker: " +
            string.Join(", ", result.ShardsPerNode.Select(n => $"{n.Node} {n.Shards}")));
        return ExitCodes.Success;
    });

    private static Task<int> StatusAsync(bool exact, CancellationToken cancellationToken) => VerbRunner.RunAsync("partitions status", async () =>
    {
        var tools = OperatorTools.Load();
        await using var dataSource = tools.ArchiverRoleDataSource();
        var snapshot = await PartitionStats.ReadAsync(dataSource, tools.Archive, TimeProvider.System.GetUtcNow(), exact, cancellationToken);
        foreach (var group in snapshot.Active.GroupBy(p => p.Table).OrderBy(g => PartitionStats.ActiveTables.ToList().IndexOf(g.Key)))
        {
            var mean = group.Average(p => (double)p.Rows);
            var shards = snapshot.Units == "shards";
            var table = new Table().Title($"{group.Key}: {group.Count()} {snapshot.Units} ({(exact ? "counted" : "estimated")})")
                .AddColumn(shards ? "shard" : "partition");
            if (shards)
            {
                table.AddColumns("#", "worker");
            }

            table.AddColumns(Numbers("rows", "bytes", "users", "waiting to archive", "rows / mean"));
            foreach (var p in group)
            {
                string[] numbers = [p.Rows.ToString("N0"), PartitionStats.Bytes(p.Bytes), p.Users?.ToString("N0") ?? "?",
                    p.Waiting?.ToString("N0") ?? "-", mean == 0 ? "-" : $"{p.Rows / mean:0.00}"];
                table.AddRow(shards ? [p.Partition, p.Key, p.Node ?? "?", .. numbers] : [p.Partition, .. numbers]);
            }

            AnsiConsole.Write(table);
        }

        var months = new Table().Title("archive months").AddColumns("month", "table").AddColumns(Numbers("rows", "bytes", "users"));
        foreach (var m in snapshot.ArchiveMonths)
        {
            months.AddRow(m.Key, m.Table, m.Rows.ToString("N0"), PartitionStats.Bytes(m.Bytes), m.Users?.ToString("N0") ?? "?");
        }

        AnsiConsole.Write(months);
        await using (var owner = tools.OwnerDataSource())
        {
            var states = await new PartitionSplit(owner, dataSource, new SplitOptions(), TimeProvider.System).StatesAsync(cancellationToken);
            if (states.Count > 0)
            {
                var latest = states.Max(s => s.NewModulus);
                var split = new Table().Title($"re-split to {latest}").AddColumns("table", "old partition", "step").AddColumns(Numbers("rows copied", "of about", "started", "finished"));
                foreach (var s in states.Where(s => s.NewModulus == latest))
                {
                    split.AddRow(s.Table, s.Partition, s.Step.Text(), s.Copied.ToString("N0"), s.Total.ToString("N0"),
                        s.StartedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss"), s.FinishedAt?.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss") ?? "-");
                }

                AnsiConsole.Write(split);
                var left = states.Count(s => s.NewModulus == latest && s.Step != SplitStep.Done);
                AnsiConsole.WriteLine(left == 0
                    ? $"re-split: to {latest} finished"
                    : $"re-split: to {latest} in progress, {left} old partition(s) left; `partitions split --to {latest}` resumes it");
            }
        }

        var todos = snapshot.Active.Where(p => p.Table == "todos_active").ToList();
        AnsiConsole.MarkupLineInterpolated(
            $"partitions: todos_active {todos.Count} {snapshot.Units}, {todos.Sum(p => p.Rows):N0} rows, {PartitionStats.Bytes(todos.Sum(p => p.Bytes))}, skew {snapshot.Skew("todos_active"):0.00} (largest / mean), {todos.Sum(p => p.Waiting ?? 0):N0} rows waiting to be archived; {snapshot.ArchiveMonths.Select(m => m.Key).Distinct().Count()} archive months, {snapshot.MonthsAhead} ahead");
        return ExitCodes.Success;
    });

    private static Task<int> IndexesAsync(string? unusedAfter, CancellationToken cancellationToken) => VerbRunner.RunAsync("partitions status", async () =>
    {
        var configuration = CliConfiguration.Load();
        var tools = OperatorTools.Load(configuration);
        var window = tools.Maintenance.UnusedIndexAfter;
        if (unusedAfter is not null)
        {
            window = ArchiveOptions.ParseDuration(unusedAfter) is { } parsed && parsed >= TimeSpan.Zero
                ? parsed
                : throw new CliException($"--unused-after '{unusedAfter}' is not a duration; use e.g. 14d, 12h, 90m.");
        }

        await using var dataSource = tools.ArchiverRoleDataSource();
        var usage = await IndexUsageSnapshot.ReadAsync(dataSource, TimeProvider.System.GetUtcNow(), cancellationToken);
        var summaries = usage.Summaries(window);
        var table = new Table().Title($"indexes: scans since the statistics were reset {usage.StatisticsSince.UtcDateTime:yyyy-MM-dd HH:mm} UTC ({Age(usage.Window)} ago)")
            .AddColumns("table", "index").AddColumns(Numbers("partitions scanned", "scans", "tuples read", "size")).AddColumns("query written above it", "verdict");
        foreach (var s in summaries)
        {
            table.AddRow(
                Markup.Escape(s.Table), Markup.Escape(s.Index), $"{s.PartitionsScanned} of {s.Partitions}", s.Scans.ToString("N0"), s.TuplesRead.ToString("N0"),
                PartitionStats.Bytes(s.Bytes), s.Query is null ? (s.Constraint ? "(constraint)" : "none") : "yes", Verdict(s));
        }

        AnsiConsole.Write(table);
        foreach (var s in summaries.Where(s => s.Verdict == IndexVerdict.Unused))
        {
            AnsiConsole.WriteLine(s.Query is { } query
                ? $"unused: {s.Index} on {s.Table} ({PartitionStats.Bytes(s.Bytes)}): no scan in {Age(usage.Window)}, though the migrations write its query: {query.Sql}; does anything still send it?"
                : $"unused: {s.Index} on {s.Table} ({PartitionStats.Bytes(s.Bytes)}): no scan in {Age(usage.Window)} and no query written above it: a candidate to drop");
        }

        var unused = summaries.Where(s => s.Verdict == IndexVerdict.Unused).ToList();
        AnsiConsole.WriteLine(
            $"indexes: {summaries.Count} on {summaries.Select(s => s.Table).Distinct().Count()} tables ({usage.Indexes.Count} with their partitions), " +
            $"{summaries.Count(s => s.Verdict == IndexVerdict.Used)} used, {unused.Count} unused ({PartitionStats.Bytes(unused.Sum(s => s.Bytes))}), " +
            $"{summaries.Count(s => s.Verdict == IndexVerdict.NotYetJudged)} not scanned yet in {Age(usage.Window)} of statistics (unused after {Age(window)}), " +
            $"{summaries.Count(s => s.Verdict == IndexVerdict.Constraint)} kept for a constraint");
        return ExitCodes.Success;
    });

    private static string Verdict(IndexSummary s) => s.Verdict switch
    {
        IndexVerdict.Used => "used",
        IndexVerdict.Unused => "[red]unused[/]",
        IndexVerdict.Constraint => "constraint, not scanned",
        _ => "not scanned yet",
    };

    private static string Age(TimeSpan span) =>
        span.TotalDays >= 1 ? $"{span.TotalDays:0.#} days" : span.TotalHours >= 1 ? $"{span.TotalHours:0.#} hours" : $"{Math.Max(0, span.TotalMinutes):0} minutes";

    private static TableColumn[] Numbers(params string[] headers) => [.. headers.Select(h => new TableColumn(h).RightAligned())];
}
