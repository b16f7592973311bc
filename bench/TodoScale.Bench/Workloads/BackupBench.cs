using System.Diagnostics;
using System.Globalization;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Bench.Stack;
using TodoScale.Testing;

namespace TodoScale.Bench.Workloads;

/// <param name="DatabaseBytes">pg_database_size of `todos` when the backup ran.</param>
/// <param name="RepositoryBytes">the repository's files after the backup (the backup and the WAL archived so far).</param>
/// <param name="RestoredRowsMatch">the restored copy's todos_active count equals the primary's at the target instant.</param>
public sealed record BackupBenchResult(
    Generated Generated, long DatabaseBytes, string BackupLine, TimeSpan BackupWall, long RepositoryBytes,
    string RestoreLine, TimeSpan RestoreWall, long RowsAtTarget, long RestoredRows, long RowsAfter, TimeSpan Elapsed)
{
    public bool RestoredRowsMatch => RowsAtTarget == RestoredRows;
}

/// <summary>
/// `--workload backup`: the operators' CLI as they run it on the generated data: `backup run --type full`, then rows
/// written, the instant noted, more rows written, and `backup restore --to` that instant into a new folder; the
/// restored copy's rows counted against the instant's. Wall times, sizes and the CLI's own summary lines.
/// </summary>
public static class BackupBench
{
    public static async Task<BackupBenchResult> RunAsync(BenchStack stack, BenchScale scale, int seed, Action<string> say, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        var (_, generated) = await Generator.LoadAllAsync(stack, scale, seed, cancellationToken);
        await using var db = stack.OpenPrimary();
        var databaseBytes = await Baselines.ScalarAsync<long>(db, "SELECT pg_database_size('todos')", cancellationToken);
        say($"backup: {generated.Rows:N0} rows, {databaseBytes / 1048576.0:N0} MiB of database; backup run --type full");

        var started = Stopwatch.StartNew();
        var backupLine = await CliAsync(stack, ["backup", "run", "--type", "full"], "backup run:", cancellationToken);
        var backupWall = started.Elapsed;
        var repository = Directory.EnumerateFiles(Path.Combine(stack.DataRoot, "backups"), "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
        say($"  {backupLine} ({backupWall.TotalSeconds:0.0} s wall)");

        await Baselines.ExecuteAsync(db, "INSERT INTO todos_active (id, user_id, title) SELECT gen_random_uuid(), gen_random_uuid(), 'before the instant' FROM generate_series(1, 1000)", cancellationToken);
        var target = await Baselines.ScalarAsync<DateTime>(db, "SELECT clock_timestamp()", cancellationToken);
        var rowsAtTarget = await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active", cancellationToken);
        await Baselines.ExecuteAsync(db, "INSERT INTO todos_active (id, user_id, title) SELECT gen_random_uuid(), gen_random_uuid(), 'after the instant' FROM generate_series(1, 1000)", cancellationToken);
        var rowsAfter = await Baselines.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active", cancellationToken);

        // Beside the stack's servers, where the server's user can reach it (the bench's temp folder is its own).
        var folder = Path.Combine(stack.DataRoot, "restore-bench");
        var instant = target.ToString("yyyy-MM-dd HH:mm:ss.ffffff", CultureInfo.InvariantCulture) + "+00";
        say($"backup: backup restore --to \"{instant}\"");
        started.Restart();
        var restoreLine = await CliAsync(stack, ["backup", "restore", "--to", instant, "--into", folder], "backup restore:", cancellationToken);
        var restoreWall = started.Elapsed;
        say($"  {restoreLine} ({restoreWall.TotalSeconds:0.0} s wall)");
        var port = int.Parse(restoreLine.Split("127.0.0.1:")[1].Split(',')[0], CultureInfo.InvariantCulture);
        long restoredRows;
        try
        {
            var restored = new NpgsqlConnectionStringBuilder(stack.PrimaryConnectionString) { Host = "127.0.0.1", Port = port, Pooling = false }.ConnectionString;
            await using var copy = BenchStack.Open(restored);
            restoredRows = await Baselines.ScalarAsync<long>(copy, "SELECT count(*) FROM todos_active", cancellationToken);
        }
        finally
        {
            await StopAsync(folder);
        }

        say($"  restored copy: {restoredRows:N0} todos_active rows; at the instant {rowsAtTarget:N0}, now {rowsAfter:N0}");
        return new BackupBenchResult(generated, databaseBytes, backupLine, backupWall, repository, restoreLine, restoreWall, rowsAtTarget, restoredRows, rowsAfter, clock.Elapsed);
    }

    private static Task<string> CliAsync(BenchStack stack, string[] args, string summary, CancellationToken cancellationToken) =>
        OperatorCli.SummaryAsync(stack.PrimaryConnectionString, args, summary, cancellationToken,
            ("Backup__Config", Path.Combine(stack.DataRoot, "pgbackrest", "pgbackrest.conf")), ("COLUMNS", "400"));

    /// <summary>Stops the restored copy (`pg_ctl stop -m fast`, as the server's user when run as root).</summary>
    private static async Task StopAsync(string folder)
    {
        var pgCtl = Directory.GetDirectories("/usr/lib/postgresql").Order().Select(d => Path.Combine(d, "bin", "pg_ctl")).Last(File.Exists);
        string[] command = Environment.UserName == "root"
            ? ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", pgCtl, "-D", folder, "stop", "-m", "fast"]
            : [pgCtl, "-D", folder, "stop", "-m", "fast"];
        using var process = Process.Start(new ProcessStartInfo(command[0], command[1..]) { RedirectStandardOutput = true, RedirectStandardError = true })!;
        await process.WaitForExitAsync();
    }
}
