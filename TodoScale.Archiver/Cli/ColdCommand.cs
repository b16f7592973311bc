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
            AnsiConsole.MarkupLineInterpolated(
                $"cold restore: {result.Manifest.Month}: {result.Manifest.Rows:N0} rows back in {string.Join(", ", result.Partitions)} in {result.Elapsed.TotalSeconds:0.0} s, checksums equal to the manifest");
        }));

        var list = new Command("list", "List the exported months: rows, sizes, compression, and whether the month is also live.");
        list.SetAction((_, cancellationToken) => ListAsync(cancellationToken));

        return new Command("cold", "Archive months in cold storage: export, list, restore.") { export, list, restore };
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

        var table = new Table().Title($"cold storage: {store.Folder}")
            .AddColumn("month")
            .AddColumns([.. new[] { "rows", "on disk", "files", "ratio" }.Select(h => new TableColumn(h).RightAligned())])
            .AddColumns("schema", "exported at (UTC)", "state");
        foreach (var month in months)
        {
            var m = month.Manifest;
            var state = month.LivePartitions switch
            {
                null => "?",
                { Count: 0 } => "cold",
                var live => $"live too ({live.Count} partition(s))",
            };
            table.AddRow(m.Month, m.Rows.ToString("N0"), PartitionStats.Bytes(m.PartitionBytes), PartitionStats.Bytes(m.FileBytes),
                $"{m.CompressionRatio:0.0}x", m.SchemaVersion, m.ExportedAt.UtcDateTime.ToString("yyyy-MM-dd HH:mm"), state);
        }

        AnsiConsole.Write(table);
        var files = months.Sum(m => m.Manifest.FileBytes);
        AnsiConsole.MarkupLineInterpolated(
            $"cold list: {months.Count} month(s), {months.Sum(m => m.Manifest.Rows):N0} rows, {PartitionStats.Bytes(files)} in files ({(files == 0 ? 0 : months.Sum(m => m.Manifest.PartitionBytes) / (double)files):0.0}x){(stateKnown ? "" : ", live state unknown")}");
        return ExitCodes.Success;
    });
}
