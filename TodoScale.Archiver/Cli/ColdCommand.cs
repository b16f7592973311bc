using System.CommandLine;
using Npgsql;
using Spectre.Console;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Telemetry;
using TodoScale.Data.Partitioning;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `cold export &lt;yyyy-mm&gt; [--drop]`, `cold list`, `cold restore &lt;yyyy-mm&gt;`: archive months to compressed files
/// with a checksummed manifest under Maintenance:ColdStorageFolder, and back. Exit 0 when done, 1 when refused
/// by the state of things (nothing exported, a live month, a damaged file; nothing changed), 2 for a bad argument.
/// </summary>
internal static class ColdCommand
{
    public static Command Create()
    {
        var month = new Argument<string>("month") { Description = "The archive month, yyyy-mm (e.g. 2024-01)." };
        var drop = new Option<bool>("--drop") { Description = "After the export is verified, detach and drop the month's partitions." };
        var export = new Command("export", "Export an archive month to compressed files, read them back and verify them, write the manifest.") { month, drop };
        export.SetAction((parseResult, cancellationToken) => RunAsync("export", parseResult.GetValue(month), async (store, m) =>
        {
            var result = await store.ExportAsync(m, parseResult.GetValue(drop), "operator", Environment.UserName, cancellationToken);
            AnsiConsole.WriteLine(result.AlreadyCold
                ? $"cold export: {result.Manifest.Month} is already in cold storage ({result.Folder}); its partitions are gone"
                : $"cold export: {result.Manifest.Month}: {Describe(result.Manifest)} in {result.Elapsed.TotalSeconds:0.0} s, read back and verified, to {result.Folder}{(result.Dropped.Count > 0 ? $"; {string.Join(", ", result.Dropped)} detached and dropped" : "")}");
        }));

        var restoreMonth = new Argument<string>("month") { Description = "The exported month to restore, yyyy-mm." };
        var restore = new Command("restore", "Re-create an exported month's partitions and reload them exactly (checksums verified).") { restoreMonth };
        restore.SetAction((parseResult, cancellationToken) => RunAsync("restore", parseResult.GetValue(restoreMonth), async (store, m) =>
        {
            var result = await store.RestoreAsync(m, "operator", Environment.UserName, cancellationToken);
            var sources = result.Sources.Where(s => s != store.MonthFolder(m)).ToList();
            AnsiConsole.MarkupLineInterpolated(
                $"cold restore: {result.Manifest.Month}: {result.Manifest.Rows:N0} rows back in {string.Join(", ", result.Partitions)} in {result.Elapsed.TotalSeconds:0.0} s, checksums equal to the manifest{(sources.Count > 0 ? $"; read from the copy {string.Join(", ", sources)} (the first folder's file was damaged or gone)" : "")}");
        }));

        var list = new Command("list", "List the exported months: rows, sizes, compression, and whether the month is also live.");
        list.SetAction((_, cancellationToken) => ListAsync(cancellationToken));

        var repair = new Option<bool>("--repair") { Description = "Copy a missing or damaged copy again from a folder whose files are intact." };
        var verify = new Command("verify", "Read back every copy of every exported month (Maintenance:ColdCopyFolders) against its manifest's sha256.") { repair };
        verify.SetAction((parseResult, cancellationToken) => VerbRunner.RunAsync("cold verify", async () =>
        {
            var tools = OperatorTools.Load();
            await using var owner = tools.OwnerDataSource();
            var store = new ColdStore(owner, tools.Maintenance, TimeProvider.System);
            if (store.CopyFolders.Count == 0)
            {
                throw new CliException("no copy folders are set (Maintenance:ColdCopyFolders, e.g. Maintenance__ColdCopyFolders__0=/mnt/region-b/cold)", ExitCodes.Failure);
            }

            var states = await store.CheckCopiesAsync(deep: true, repair: parseResult.GetValue(repair), cancellationToken);
            foreach (var state in states.Where(s => s.State != ColdCopyState.Ok || s.Repaired))
            {
                AnsiConsole.MarkupLineInterpolated($"cold verify: {state.Month} in {state.Folder}: {(state.Repaired ? "repaired" : state.State)} ({state.Detail})");
            }

            var bad = states.Count(s => s.State != ColdCopyState.Ok);
            AnsiConsole.MarkupLineInterpolated(
                $"cold verify: {states.Count - bad} of {states.Count} copies intact ({store.CopyFolders.Count + 1} folder(s) x {states.Select(s => s.Month).Distinct().Count()} month(s)), {states.Count(s => s.Repaired)} repaired, {bad} missing or damaged");
            return bad == 0 ? ExitCodes.Success : ExitCodes.Failure;
        }));

        return new Command("cold", "Archive months in cold storage: export, list, restore, verify the copies.") { export, list, restore, verify };
    }

    public static string Describe(ColdManifest manifest) =>
        $"{manifest.Rows:N0} rows, {PartitionStats.Bytes(manifest.PartitionBytes)} on disk -> {PartitionStats.Bytes(manifest.FileBytes)} compressed ({manifest.CompressionRatio:0.0}x)";

    private static Task<int> RunAsync(string verb, string? monthText, Func<ColdStore, DateOnly, Task> action) => VerbRunner.RunAsync($"cold {verb}", async () =>
    {
        var month = ArchiveMonths.Parse(monthText ?? "") ?? throw new CliException($"'{monthText}' is not a month; use yyyy-mm, e.g. 2024-01.");
        var tools = OperatorTools.Load();
        await using var owner = tools.OwnerDataSource();
        var store = new ColdStore(owner, tools.Maintenance, TimeProvider.System);
        if (Console.IsOutputRedirected)
        {
            await action(store, month);
        }
        else
        {
            await AnsiConsole.Status().StartAsync($"cold {verb} {ArchiveMonths.Format(month)}...", _ => action(store, month));
        }

        return ExitCodes.Success;
    });

    private static Task<int> ListAsync(CancellationToken cancellationToken) => VerbRunner.RunAsync("cold list", async () =>
    {
        var tools = OperatorTools.Load();
        await using var owner = tools.OwnerDataSource();
        var store = new ColdStore(owner, tools.Maintenance, TimeProvider.System);
        IReadOnlyList<ColdMonth> months;
        var stateKnown = true;
        try
        {
            months = await store.ListAsync(withLiveState: true, cancellationToken);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            // The files are readable without the database: list them, and say what could not be checked.
            AnsiConsole.MarkupLineInterpolated($"[yellow]cold list: the database did not answer ({Failures.Describe(ex)}); live state unknown[/]");
            months = await store.ListAsync(withLiveState: false, cancellationToken);
            stateKnown = false;
        }

        // The copies at a glance (present, sizes right); `cold verify` reads every byte back.
        var copies = store.CopyFolders.Count == 0 ? [] : await store.CheckCopiesAsync(deep: false, repair: false, cancellationToken);
        var table = new Table().Title($"cold storage: {store.Folder}")
            .AddColumn("month")
            .AddColumns([.. new[] { "rows", "on disk", "files", "ratio" }.Select(h => new TableColumn(h).RightAligned())])
            .AddColumns("schema", "exported at (UTC)", "state");
        if (store.CopyFolders.Count > 0)
        {
            table.AddColumn("copies");
        }

        foreach (var month in months)
        {
            var m = month.Manifest;
            var state = month.LivePartitions switch
            {
                null => "?",
                { Count: 0 } => "cold",
                var live => $"live too ({live.Count} partition(s))",
            };
            string[] row = [m.Month, m.Rows.ToString("N0"), PartitionStats.Bytes(m.PartitionBytes), PartitionStats.Bytes(m.FileBytes),
                $"{m.CompressionRatio:0.0}x", m.SchemaVersion, m.ExportedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm"), state];
            if (store.CopyFolders.Count > 0)
            {
                var mine = copies.Where(c => c.Month == m.Month).ToList();
                row = [.. row, $"{mine.Count(c => c.State == ColdCopyState.Ok)}/{store.CopyFolders.Count}{(mine.Any(c => c.State != ColdCopyState.Ok) ? " (" + string.Join(", ", mine.Where(c => c.State != ColdCopyState.Ok).Select(c => c.State).Distinct()) + ")" : "")}"];
            }

            table.AddRow(row);
        }

        AnsiConsole.Write(table);
        var files = months.Sum(m => m.Manifest.FileBytes);
        AnsiConsole.MarkupLineInterpolated(
            $"cold list: {months.Count} month(s), {months.Sum(m => m.Manifest.Rows):N0} rows, {PartitionStats.Bytes(files)} in files ({(files == 0 ? 0 : months.Sum(m => m.Manifest.PartitionBytes) / (double)files):0.0}x){(stateKnown ? "" : ", live state unknown")}{(store.CopyFolders.Count > 0 ? $", copies: {copies.Count(c => c.State == ColdCopyState.Ok)} of {copies.Count} present" : "")}");
        return ExitCodes.Success;
    });
}
