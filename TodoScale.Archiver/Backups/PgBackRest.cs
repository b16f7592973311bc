using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Npgsql;
using TodoScale.Archiver.Settings;

namespace TodoScale.Archiver.Backups;

/// <summary>A backup, list or restore that could not be done, with pgBackRest's or PostgreSQL's reason.</summary>
public sealed class BackupException(string message) : Exception(message);

/// <summary>One backup in the repository, as `pgbackrest info` describes it.</summary>
public sealed record BackupSet(
    string Label, string Type, DateTimeOffset Start, DateTimeOffset Stop, long DatabaseBytes, long RepositoryBytes,
    long RepositoryDeltaBytes, string? Prior, string? WalStart, string? WalStop)
{
    public TimeSpan Duration => Stop - Start;
}

/// <summary>The repository: its backups (oldest first) and the range of WAL archived.</summary>
public sealed record BackupInventory(IReadOnlyList<BackupSet> Backups, string? WalMin, string? WalMax, string Status)
{
    /// <summary>The earliest instant a restore can reach: the end of the oldest backup.</summary>
    public DateTimeOffset? RecoverableFrom => Backups.Count == 0 ? null : Backups.Min(b => b.Stop);
}

/// <summary>
/// pgBackRest (https://pgbackrest.org) run for the primary: the configuration the AppHost wrote (repository, data
/// folder, socket), the primary's port of this run on each command line, as the server's user when run as root
/// (pgBackRest reads the data folder and must write files the server can read back).
/// </summary>
public sealed class PgBackRest(BackupOptions options, int port)
{
    public BackupOptions Options { get; } = options;

    /// <summary>pgBackRest's exit code when another process holds the stanza's lock (ERROR [050]).</summary>
    public const int LockHeld = 50;

    /// <summary>How long a backup waits for one already running before it fails.</summary>
    public static readonly TimeSpan LockWait = TimeSpan.FromMinutes(30);

    /// <summary>For the primary behind <paramref name="connectionString"/>; refused clearly when backups are not set up.</summary>
    public static PgBackRest For(BackupOptions options, string connectionString)
    {
        if (!File.Exists(options.ConfigFullPath))
        {
            throw new BackupException(
                $"no pgBackRest configuration at {options.ConfigFullPath}: backups are set up by process mode's AppHost " +
                "(./build.sh run), which writes it under its data root (.data/pgbackrest/pgbackrest.conf); point Backup:Config " +
                "(Backup__Config) at that file. Container mode and Citus do not offer backups (README, \"Backups\").");
        }

        return new PgBackRest(options, new NpgsqlConnectionStringBuilder(connectionString).Port);
    }

    /// <summary>The data folder of the cluster the configuration backs up (pg1-path).</summary>
    public string DataFolder => ConfigValue("pg1-path") ?? throw new BackupException($"{Options.ConfigFullPath} names no pg1-path");

    /// <summary>The repository (pg1's repo1-path) on disk: backups and archived WAL, in bytes.</summary>
    public long RepositoryBytes()
    {
        var repository = ConfigValue("repo1-path");
        return repository is null || !Directory.Exists(repository)
            ? 0
            : Directory.EnumerateFiles(repository, "*", new EnumerationOptions { RecurseSubdirectories = true, IgnoreInaccessible = true })
                .Sum(f => new FileInfo(f).Length);
    }

    /// <summary>A full, differential or incremental backup, then expiry by the retention settings; returns it.</summary>
    public async Task<BackupSet> BackupAsync(string type, Action<string>? progress, CancellationToken cancellationToken)
    {
        // One backup at a time (pgBackRest's lock): one asked for while another runs (the worker's scheduled one, an
        // operator's) waits for it, up to LockWait.
        var waited = Stopwatch.StartNew();
        int exit;
        string output;
        while (true)
        {
            (exit, output) = await RunAsync(
                ["backup", $"--type={type}", $"--repo1-retention-full={Options.RetentionFull}", $"--repo1-retention-diff={Options.RetentionDiff}"],
                info: true, progress, cancellationToken);
            if (exit != LockHeld || waited.Elapsed > LockWait)
            {
                break;
            }

            progress?.Invoke("another backup is running (pgBackRest's lock): waiting for it to finish");
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
        }

        if (exit != 0)
        {
            throw new BackupException($"pgbackrest backup exited {exit}: {Errors(output)}");
        }

        var label = output.Split('\n').Select(l => l.Split("new backup label = ", 2)).Where(p => p.Length == 2).Select(p => p[1].Trim()).LastOrDefault();
        var inventory = await InfoAsync(cancellationToken);
        return inventory.Backups.LastOrDefault(b => b.Label == label) ?? inventory.Backups.LastOrDefault()
            ?? throw new BackupException($"pgbackrest backup finished but the repository lists no backup: {Errors(output)}");
    }

    /// <summary>`pgbackrest info`: the backups and the archived WAL of the stanza.</summary>
    public async Task<BackupInventory> InfoAsync(CancellationToken cancellationToken)
    {
        var (exit, output) = await RunAsync(["info", "--output=json"], info: false, progress: null, cancellationToken);
        if (exit != 0)
        {
            throw new BackupException($"pgbackrest info exited {exit}: {Errors(output)}");
        }

        return ParseInfo(output, Options.Stanza);
    }

    /// <summary>
    /// Restores the backup before <paramref name="target"/> into the empty <paramref name="folder"/> with recovery set
    /// to stop there and pause (read-only), WAL archiving off (the copy must never push into the live repository).
    /// </summary>
    public async Task RestoreAsync(DateTimeOffset target, string folder, Action<string>? progress, CancellationToken cancellationToken)
    {
        // Made by this user (who may write where the server's user may not), then handed to the server's user.
        Directory.CreateDirectory(folder);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }

        if (Environment.UserName == "root")
        {
            await RunCheckedAsync(new ProcessStartInfo("chown", ["postgres:postgres", folder]) { RedirectStandardOutput = true, RedirectStandardError = true }, cancellationToken);
        }

        var (exit, output) = await RunAsync(
        [
            "restore", "--type=time", $"--target={Timestamp(target)}", "--target-action=pause", "--archive-mode=off",
            $"--pg1-path={folder}",
        ], info: true, progress, cancellationToken);
        if (exit != 0)
        {
            throw new BackupException($"pgbackrest restore exited {exit}: {Errors(output)}");
        }
    }

    /// <summary>A time as PostgreSQL reads it (recovery_target_time), in UTC to the microsecond.</summary>
    public static string Timestamp(DateTimeOffset time) =>
        time.ToUniversalTime().ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture) + "+00";

    public static BackupInventory ParseInfo(string json, string stanza)
    {
        using var document = JsonDocument.Parse(json);
        var entry = document.RootElement.EnumerateArray().FirstOrDefault(s => s.GetProperty("name").GetString() == stanza);
        if (entry.ValueKind == JsonValueKind.Undefined)
        {
            return new BackupInventory([], null, null, "missing stanza");
        }

        var backups = new List<BackupSet>();
        if (entry.TryGetProperty("backup", out var list))
        {
            foreach (var backup in list.EnumerateArray())
            {
                var timestamp = backup.GetProperty("timestamp");
                var info = backup.GetProperty("info");
                var archive = backup.TryGetProperty("archive", out var a) ? a : default;
                backups.Add(new BackupSet(
                    backup.GetProperty("label").GetString()!,
                    backup.GetProperty("type").GetString()!,
                    DateTimeOffset.FromUnixTimeSeconds(timestamp.GetProperty("start").GetInt64()),
                    DateTimeOffset.FromUnixTimeSeconds(timestamp.GetProperty("stop").GetInt64()),
                    info.GetProperty("size").GetInt64(),
                    info.GetProperty("repository").GetProperty("size").GetInt64(),
                    info.GetProperty("repository").GetProperty("delta").GetInt64(),
                    backup.TryGetProperty("prior", out var prior) && prior.ValueKind == JsonValueKind.String ? prior.GetString() : null,
                    archive.ValueKind == JsonValueKind.Object ? archive.GetProperty("start").GetString() : null,
                    archive.ValueKind == JsonValueKind.Object ? archive.GetProperty("stop").GetString() : null));
            }
        }

        string? min = null, max = null;
        if (entry.TryGetProperty("archive", out var archives))
        {
            foreach (var range in archives.EnumerateArray())
            {
                min ??= range.TryGetProperty("min", out var m) ? m.GetString() : null;
                max = range.TryGetProperty("max", out var x) ? x.GetString() : max;
            }
        }

        var status = entry.GetProperty("status").GetProperty("message").GetString() ?? "";
        return new BackupInventory([.. backups.OrderBy(b => b.Stop)], min, max, status);
    }

    /// <summary>
    /// Run as root, the restore hands <paramref name="folder"/> to the server's user (postgres), who must be able to
    /// enter every folder above it: the first one it cannot enter, or null when it can reach it (or when this process
    /// is not root: the server's user is then this user, who made the folder).
    /// </summary>
    public static async Task<string?> UnreachableByServerUserAsync(string folder, CancellationToken cancellationToken)
    {
        if (Environment.UserName != "root")
        {
            return null;
        }

        var ancestors = new List<string>();
        for (var dir = Path.GetDirectoryName(Path.GetFullPath(folder)); dir is not null; dir = Path.GetDirectoryName(dir))
        {
            if (Directory.Exists(dir))
            {
                ancestors.Add(dir);
            }
        }

        ancestors.Reverse(); // from / down
        foreach (var dir in ancestors)
        {
            var (exit, _) = await RunToEndAsync(AsServerUser("test", ["-x", dir]), null, cancellationToken);
            if (exit != 0)
            {
                return dir;
            }
        }

        return null;
    }

    /// <summary>Runs a program as the user the server runs as: postgres when this process is root, else this user.</summary>
    public static ProcessStartInfo AsServerUser(string program, IEnumerable<string> args)
    {
        var info = Environment.UserName == "root"
            ? new ProcessStartInfo("setpriv", ["--reuid=postgres", "--regid=postgres", "--init-groups", program, .. args])
            : new ProcessStartInfo(program, args);
        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        return info;
    }

    public static async Task<(int Exit, string Output)> RunToEndAsync(ProcessStartInfo info, Action<string>? line, CancellationToken cancellationToken)
    {
        Process process;
        try
        {
            process = Process.Start(info) ?? throw new BackupException($"could not start {info.FileName}");
        }
        catch (Win32Exception e)
        {
            throw new BackupException($"cannot run {info.FileName}: {e.Message} (./build.sh installs pgbackrest and PostgreSQL's tools)");
        }

        using (process)
        {
            var output = new System.Text.StringBuilder();
            void Read(string? text)
            {
                if (text is null)
                {
                    return;
                }

                lock (output)
                {
                    output.AppendLine(text);
                }

                line?.Invoke(text);
            }

            process.OutputDataReceived += (_, e) => Read(e.Data);
            process.ErrorDataReceived += (_, e) => Read(e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            try
            {
                await process.WaitForExitAsync(cancellationToken);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
                throw;
            }

            process.WaitForExit(); // the last lines of output
            lock (output)
            {
                return (process.ExitCode, output.ToString());
            }
        }
    }

    private static async Task RunCheckedAsync(ProcessStartInfo info, CancellationToken cancellationToken)
    {
        var (exit, output) = await RunToEndAsync(info, null, cancellationToken);
        if (exit != 0)
        {
            throw new BackupException($"{info.FileName} {string.Join(' ', info.ArgumentList)} exited {exit}: {output.Trim()}");
        }
    }

    /// <summary>Runs a pgBackRest command; the primary's port goes only to the commands that connect to it (backup, check).</summary>
    private Task<(int Exit, string Output)> RunAsync(IReadOnlyList<string> command, bool info, Action<string>? progress, CancellationToken cancellationToken) =>
        RunToEndAsync(AsServerUser(Options.Program,
        [
            $"--config={Options.ConfigFullPath}", $"--stanza={Options.Stanza}",
            .. command[0] is "backup" or "check" ? [$"--pg1-port={port}"] : Array.Empty<string>(),
            $"--log-level-console={(info ? "info" : "warn")}", "--log-level-stderr=off", .. command,
        ]), progress is null ? null : line => progress(line.Trim()), cancellationToken);

    private string? ConfigValue(string key) =>
        File.ReadLines(Options.ConfigFullPath).Select(l => l.Split('=', 2)).Where(p => p.Length == 2 && p[0].Trim() == key).Select(p => p[1].Trim()).LastOrDefault();

    /// <summary>pgBackRest's ERROR and WARN lines (or its last lines when it printed none).</summary>
    private static string Errors(string output)
    {
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var errors = lines.Where(l => l.Contains("ERROR:", StringComparison.Ordinal) || l.Contains("WARN:", StringComparison.Ordinal)).ToList();
        return string.Join(" | ", errors.Count > 0 ? errors : lines.TakeLast(3));
    }
}
