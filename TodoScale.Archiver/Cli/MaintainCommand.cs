using System.CommandLine;
using Spectre.Console;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Maintenance;
using TodoScale.Archiver.Worker;
using TodoScale.Data.Partitioning;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `maintain --once`: archive months made ahead, months past retention exported to cold storage, verified,
/// detached and dropped, and bloated indexes rebuilt. Exit 0 when everything due was done, 1 when a month
/// failed (its partitions are kept) or the database failed, 2 for a bad setting.
/// </summary>
internal static class MaintainCommand
{
    public static Command Create()
    {
        var once = new Option<bool>("--once") { Description = "Run upkeep now and exit (`serve` runs it at start, daily, and reindexes weekly)." };
        var noReindex = new Option<bool>("--no-reindex") { Description = "Skip measuring index bloat and reindexing." };
        var command = new Command("maintain", "Premake archive months, move months past retention to cold storage, reindex bloated indexes.")
        {
            once, noReindex,
        };
        command.SetAction((parseResult, cancellationToken) => RunAsync(parseResult.GetValue(once), !parseResult.GetValue(noReindex), cancellationToken));
        return command;
    }

    private static Task<int> RunAsync(bool once, bool reindex, CancellationToken cancellationToken) => VerbRunner.RunAsync("maintain", async () =>
    {
        if (!once)
        {
            throw new CliException("maintain runs once with --once (the worker, `serve`, runs it on its schedule).");
        }

        var tools = OperatorTools.Load();
        await using var owner = tools.OwnerDataSource();
        var cold = new ColdStore(owner, tools.Maintenance, TimeProvider.System);
        var upkeep = new Upkeep(owner, tools.Archive, cold, new IndexMaintenance(owner, tools.Maintenance), TimeProvider.System);
        AnsiConsole.MarkupLineInterpolated(
            $"[grey]maintain:[/] {tools.Archive.Premake} month(s) ahead, retention {tools.Maintenance.RetentionMonths} months to {cold.Folder}, reindex over {tools.Maintenance.ReindexBloatPercent}% bloat");
        var result = await upkeep.RunAsync(reindex, "operator", Environment.UserName,
            new ConsoleLines(), cancellationToken);

        foreach (var month in result.Exported)
        {
            AnsiConsole.WriteLine(month.AlreadyCold
                ? $"maintain: {month.Manifest.Month} was already in cold storage"
                : $"maintain: {month.Manifest.Month} to cold storage: {ColdCommand.Describe(month.Manifest)}, verified, {month.Dropped.Count} partition(s) detached and dropped");
        }

        foreach (var failure in result.Failed)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]maintain: {ArchiveMonths.Format(failure.Month)} not moved: {failure.Error}[/]");
        }

        foreach (var index in result.Reindexed)
        {
            AnsiConsole.MarkupLineInterpolated($"maintain: reindexed {index.Index} ({index.BloatPercent:0}% bloat, {index.Bytes / 1048576.0:0.0} MB before)");
        }

        foreach (var copy in result.Copies.Where(c => c.State != ColdStorage.ColdCopyState.Ok || c.Repaired))
        {
            AnsiConsole.MarkupLineInterpolated($"maintain: copy of {copy.Month} in {copy.Folder}: {(copy.Repaired ? "repaired" : copy.State)} ({copy.Detail})");
        }

        var badCopies = result.Copies.Count(c => c.State != ColdStorage.ColdCopyState.Ok);
        AnsiConsole.MarkupLineInterpolated(
            $"maintain: done in {result.Elapsed.TotalSeconds:0.0} s: {result.MonthsCreated} month(s) created, {result.Exported.Count(e => !e.AlreadyCold)} month(s) to cold storage, {result.Failed.Count} failed, {(result.ReindexSkipped is { } why ? $"reindex skipped ({why})" : $"{result.Reindexed.Count} index(es) rebuilt")}{(result.Copies.Count > 0 ? $", copies: {result.Copies.Count - badCopies} ok of {result.Copies.Count} ({result.Copies.Count(c => c.Repaired)} repaired)" : "")}");
        return result.Failed.Count == 0 && badCopies == 0 ? ExitCodes.Success : ExitCodes.Failure;
    });

    /// <summary>Progress printed at once, in order (<see cref="Progress{T}"/> would post it to the thread pool).</summary>
    private sealed class ConsoleLines : IProgress<string>
    {
        public void Report(string value) => AnsiConsole.MarkupLineInterpolated($"[grey]maintain: {value}[/]");
    }
}
