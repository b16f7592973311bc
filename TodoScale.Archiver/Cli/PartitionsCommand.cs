using System.CommandLine;
using Spectre.Console;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.Partitions;

namespace TodoScale.Archiver.Cli;

/// <summary>`partitions status [--exact]`: rows, bytes, users, archive backlog and skew per partition, and the archive months.</summary>
internal static class PartitionsCommand
{
    public static Command Create()
    {
        var exact = new Option<bool>("--exact") { Description = "Count rows and distinct users (reads every partition) instead of using the statistics' estimates." };
        var status = new Command("status", "Rows, bytes, users and skew per partition of todos_active and ai_interactions, and per archive month.") { exact };
        status.SetAction((parseResult, cancellationToken) => StatusAsync(parseResult.GetValue(exact), cancellationToken));
        return new Command("partitions", "The hash partitions of the active tables and the archive months.") { status };
    }

    private static Task<int> StatusAsync(bool exact, CancellationToken cancellationToken) => VerbRunner.RunAsync("partitions status", async () =>
    {
        var tools = OperatorTools.Load();
        await using var dataSource = tools.ArchiverRoleDataSource();
        var snapshot = await PartitionStats.ReadAsync(dataSource, tools.Archive, TimeProvider.System.GetUtcNow(), exact, cancellationToken);
        foreach (var group in snapshot.Active.GroupBy(p => p.Table).OrderBy(g => PartitionStats.ActiveTables.ToList().IndexOf(g.Key)))
        {
            var mean = group.Average(p => (double)p.Rows);
            var table = new Table().Title($"{group.Key}: {group.Count()} partitions ({(exact ? "counted" : "estimated")})")
                .AddColumn("partition").AddColumns(Numbers("rows", "bytes", "users", "waiting to archive", "rows / mean"));
            foreach (var p in group)
            {
                table.AddRow(p.Partition, p.Rows.ToString("N0"), PartitionStats.Bytes(p.Bytes), p.Users?.ToString("N0") ?? "?",
                    p.Waiting?.ToString("N0") ?? "-", mean == 0 ? "-" : $"{p.Rows / mean:0.00}");
            }

            AnsiConsole.Write(table);
        }

        var months = new Table().Title("archive months").AddColumns("month", "table").AddColumns(Numbers("rows", "bytes", "users"));
        foreach (var m in snapshot.ArchiveMonths)
        {
            months.AddRow(m.Key, m.Table, m.Rows.ToString("N0"), PartitionStats.Bytes(m.Bytes), m.Users?.ToString("N0") ?? "?");
        }

        AnsiConsole.Write(months);
        var todos = snapshot.Active.Where(p => p.Table == "todos_active").ToList();
        AnsiConsole.MarkupLineInterpolated(
            $"partitions: todos_active {todos.Count} partitions, {todos.Sum(p => p.Rows):N0} rows, {PartitionStats.Bytes(todos.Sum(p => p.Bytes))}, skew {snapshot.Skew("todos_active"):0.00} (largest / mean), {todos.Sum(p => p.Waiting ?? 0):N0} rows waiting to be archived; {snapshot.ArchiveMonths.Select(m => m.Key).Distinct().Count()} archive months, {snapshot.MonthsAhead} ahead");
        return ExitCodes.Success;
    });

    private static TableColumn[] Numbers(params string[] headers) => [.. headers.Select(h => new TableColumn(h).RightAligned())];
}
