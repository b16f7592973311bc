using System.CommandLine;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Spectre.Console;
using TodoScale.Archiver.Backups;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Telemetry;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `backup run [--type full|diff|incr]`, `backup list`, `backup restore --to &lt;time&gt; --into &lt;folder&gt; [--port N]`:
/// pgBackRest backups of the primary and point-in-time restores into a new folder (never over the live cluster).
/// Exit 0 when done, 1 when refused or failed (nothing changed on the live cluster), 2 for a bad argument.
/// </summary>
internal static class BackupCommand
{
    private static readonly string[] Types = ["full", "diff", "incr"];

    public static Command Create()
    {
        var type = new Option<string>("--type")
        {
            Description = "full, diff (changes since the last full) or incr (since the last backup). A diff or incr with no full before it is taken as a full.",
            DefaultValueFactory = _ => "diff",
        };
        var run = new Command("run", "Take a backup now (then expire the ones past Backup:RetentionFull / RetentionDiff).") { type };
        run.SetAction((parseResult, cancellationToken) => VerbRunner.RunAsync("backup run", async () =>
        {
            if (!Types.Contains(parseResult.GetValue(type)))
            {
                throw new CliException($"--type must be one of {string.Join(", ", Types)} (was '{parseResult.GetValue(type)}').");
            }

            var (service, _) = Open();
            var backup = await WithProgressAsync($"backup run ({parseResult.GetValue(type)})",
                progress => service.RunAsync(parseResult.GetValue(type)!, "operator", Environment.UserName, progress, cancellationToken));
            AnsiConsole.MarkupLineInterpolated(
                $"backup run: {backup.Type} backup {backup.Label} in {backup.Duration.TotalSeconds:0} s: {PartitionStats.Bytes(backup.DatabaseBytes)} of database, {PartitionStats.Bytes(backup.RepositoryDeltaBytes)} added to the repository (WAL {backup.WalStart} to {backup.WalStop})");
            return ExitCodes.Success;
        }));

        var list = new Command("list", "List the backups in the repository and the span of time a restore can reach.");
        list.SetAction((_, cancellationToken) => VerbRunner.RunAsync("backup list", async () =>
        {
            var (service, _) = Open();
            var inventory = await service.Tool.InfoAsync(cancellationToken);
            var table = new Table().Title($"backups: {service.Tool.Options.ConfigFullPath}")
                .AddColumns("label", "type", "started (UTC)")
                .AddColumns([.. new[] { "took", "database", "in repository" }.Select(h => new TableColumn(h).RightAligned())])
                .AddColumns("based on", "WAL");
            foreach (var b in inventory.Backups)
            {
                table.AddRow(b.Label, b.Type, b.Start.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture), $"{b.Duration.TotalSeconds:0} s",
                    PartitionStats.Bytes(b.DatabaseBytes), PartitionStats.Bytes(b.RepositoryDeltaBytes), b.Prior ?? "", $"{b.WalStart} .. {b.WalStop}");
            }

            AnsiConsole.Write(table);
            if (inventory.RecoverableFrom is { } from)
            {
                AnsiConsole.MarkupLineInterpolated(
                    $"backup list: {inventory.Backups.Count} backup(s) ({inventory.Backups.Count(b => b.Type == "full")} full), {PartitionStats.Bytes(inventory.Backups.Sum(b => b.RepositoryDeltaBytes))} in the repository; restorable from {PgBackRest.Timestamp(from)} to the last archived WAL ({inventory.WalMax}); status: {inventory.Status}");
            }
            else
            {
                AnsiConsole.MarkupLineInterpolated($"backup list: no backups yet (status: {inventory.Status})");
            }

            return ExitCodes.Success;
        }));

        var to = new Option<string>("--to") { Description = "The instant to restore, e.g. \"2026-12-07 14:03:00+00\" (no offset: UTC).", Required = true };
        var into = new Option<string>("--into") { Description = "A new (or empty) folder for the restored cluster; never the live one.", Required = true };
        var port = new Option<int?>("--port") { Description = "The port it listens on (127.0.0.1); default: a free one." };
        var restore = new Command("restore", "Restore the cluster as of an instant into a new folder and start it there, read-only, paused at that instant.") { to, into, port };
        restore.SetAction((parseResult, cancellationToken) => VerbRunner.RunAsync("backup restore", async () =>
        {
            var target = ParseTime(parseResult.GetValue(to)!);
            var folder = Path.GetFullPath(parseResult.GetValue(into)!);
            var listen = parseResult.GetValue(port) ?? FreePort();
            if (listen is < 1024 or > 65535)
            {
                throw new CliException($"--port {listen} is not a port from 1024 to 65535.");
            }

            var (service, _) = Open();
            RefuseFolder(folder, service.Tool.DataFolder);
            if (await PgBackRest.UnreachableByServerUserAsync(folder, cancellationToken) is { } closed)
            {
                throw new CliException(
                    $"--into {folder}: the server's user (postgres) cannot enter {closed}, so it could not run the restored cluster there; " +
                    $"restore under a folder it can reach, or open that one to it (chmod o+x {closed}).");
            }

            var result = await WithProgressAsync("backup restore", progress =>
                service.RestoreAsync(target, folder, listen, "operator", Environment.UserName, progress, cancellationToken));
            AnsiConsole.MarkupLineInterpolated(
                $"backup restore: {result.Folder} holds the cluster as of {PgBackRest.Timestamp(result.Target)}, up on 127.0.0.1:{result.Port}, read-only (recovery paused at that instant); {PartitionStats.Bytes(result.Bytes)} restored in {result.Elapsed.TotalSeconds:0.0} s");
            var pgCtl = new RestoredCluster(folder, listen).PgCtl;
            AnsiConsole.MarkupLineInterpolated($"  promote it (a deliberate step: it becomes writable, a new timeline): {pgCtl} -D {folder} promote");
            AnsiConsole.MarkupLineInterpolated($"  stop it: {pgCtl} -D {folder} stop -m fast");
            return ExitCodes.Success;
        }));

        return new Command("backup", "Physical backups of the primary with pgBackRest, and point-in-time restores into a new folder.") { run, list, restore };
    }

    public static DateTimeOffset ParseTime(string text) =>
        DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowWhiteSpaces, out var time)
            ? time
            : throw new CliException($"--to '{text}' is not a time; use e.g. \"2026-12-07 14:03:00+00\" (no offset: UTC).");

    private static void RefuseFolder(string folder, string liveFolder)
    {
        var live = Path.GetFullPath(liveFolder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        var target = folder.TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        if (target.StartsWith(live, StringComparison.Ordinal) || live.StartsWith(target, StringComparison.Ordinal))
        {
            throw new CliException($"--into {folder} overlaps the live cluster's folder {liveFolder}: a restore goes into a folder of its own.");
        }

        if (File.Exists(folder) || (Directory.Exists(folder) && Directory.EnumerateFileSystemEntries(folder).Any()))
        {
            throw new CliException($"--into {folder} exists and is not empty: name a new folder.");
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static (BackupService Service, OperatorTools Tools) Open()
    {
        var configuration = CliConfiguration.Load();
        var tools = OperatorTools.Load(configuration);
        var options = configuration.BindOptions<BackupOptions>(BackupOptions.Section, o => o.Errors());
        try
        {
            var tool = PgBackRest.For(options, tools.ConnectionString);
            return (new BackupService(tool, tools.OwnerDataSource(), tools.ConnectionString), tools);
        }
        catch (BackupException e)
        {
            throw new CliException(e.Message, ExitCodes.Failure);
        }
    }

    /// <summary>pgBackRest's progress lines: under a spinner at a terminal, as they come otherwise.</summary>
    private static async Task<T> WithProgressAsync<T>(string title, Func<Action<string>, Task<T>> work)
    {
        if (Console.IsOutputRedirected)
        {
            return await work(line => Console.WriteLine($"  {line}"));
        }

        return await AnsiConsole.Status().StartAsync(title, context => work(line => context.Status($"{title}: {Markup.Escape(line)}")));
    }
}
