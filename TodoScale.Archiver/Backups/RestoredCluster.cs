using System.Diagnostics;
using Npgsql;

namespace TodoScale.Archiver.Backups;

/// <summary>
/// A cluster restored by `backup restore` into its own folder, started on its own port, read-only: recovery stops at
/// the target and pauses there (a hot standby), so it shows the data of that instant and nothing after it. It is never
/// the live cluster; promoting it (`pg_ctl promote`) is the operator's deliberate next step.
/// </summary>
public sealed class RestoredCluster(string folder, int port)
{
    /// <summary>How long recovery may take to reach the target before the restore is reported as failed.</summary>
    public static readonly TimeSpan RecoveryTimeout = TimeSpan.FromMinutes(30);

    public string Folder { get; } = folder;

    public int Port { get; } = port;

    public string LogFile => Path.Combine(Folder, "restore.log");

    /// <summary>pg_ctl of the PostgreSQL major the folder holds (PG_VERSION), from the local install.</summary>
    public string PgCtl
    {
        get
        {
            var major = File.ReadAllText(Path.Combine(Folder, "PG_VERSION")).Trim();
            var installed = $"/usr/lib/postgresql/{major}/bin/pg_ctl";
            return File.Exists(installed) ? installed : "pg_ctl";
        }
    }

    /// <summary>
    /// Starts it (as the server's user, detached: it outlives this command) with the settings a hot standby of the
    /// primary needs, on 127.0.0.1 only, archiving off.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken)
    {
        // A hot standby refuses to recover with fewer connections, workers, senders, prepared transactions or locks
        // than the primary had ("recovery aborted because of insufficient parameter settings"); the primary's values
        // were on its command line, not in the restored postgresql.conf, and pg_control recorded them.
        var (controlExit, control) = await PgBackRest.RunToEndAsync(PgBackRest.AsServerUser(Path.Combine(Path.GetDirectoryName(PgCtl) ?? "", "pg_controldata"), [Folder]),
            null, cancellationToken);
        if (controlExit != 0)
        {
            throw new BackupException($"pg_controldata could not read the restored folder (exit {controlExit}): {control.Trim()}");
        }

        string[] settings =
        [
            $"-p {Port}", "-c listen_addresses=127.0.0.1", "-c unix_socket_directories=", "-c hot_standby=on",
            "-c archive_mode=off", "-c logging_collector=off",
            .. StandbySettings(control).Select(setting => $"-c {setting.Key}={setting.Value}"),
        ];
        var (exit, output) = await PgBackRest.RunToEndAsync(PgBackRest.AsServerUser(PgCtl,
            ["-D", Folder, "-l", LogFile, "-w", "-t", "600", "-o", string.Join(' ', settings), "start"]), null, cancellationToken);
        if (exit != 0)
        {
            throw new BackupException($"the restored cluster did not start (pg_ctl exited {exit}): {output.Trim()} {LogTail()}");
        }
    }

    /// <summary>Waits until recovery has reached the target and paused; a recovery that ends first fails with the server's words.</summary>
    public async Task WaitForTargetAsync(string liveConnectionString, CancellationToken cancellationToken)
    {
        var builder = new NpgsqlConnectionStringBuilder(liveConnectionString)
        {
            Host = "127.0.0.1", Port = Port, Pooling = false, Timeout = 5,
        };
        var waited = Stopwatch.StartNew();
        var last = "";
        while (waited.Elapsed < RecoveryTimeout)
        {
            if (!File.Exists(Path.Combine(Folder, "postmaster.pid")))
            {
                throw new BackupException($"the restored cluster stopped before reaching the target: {LogTail()}");
            }

            try
            {
                await using var connection = new NpgsqlConnection(builder.ConnectionString);
                await connection.OpenAsync(cancellationToken);
                await using var command = new NpgsqlCommand("SELECT CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE 'promoted' END", connection);
                last = (string)(await command.ExecuteScalarAsync(cancellationToken))!;
                if (last == "paused")
                {
                    return;
                }

                if (last == "promoted")
                {
                    throw new BackupException("the restored cluster left recovery without pausing at the target");
                }
            }
            catch (NpgsqlException e)
            {
                last = e.Message; // not accepting connections yet (consistency not reached)
            }

            await Task.Delay(TimeSpan.FromMilliseconds(200), cancellationToken);
        }

        throw new BackupException($"recovery did not reach the target within {RecoveryTimeout.TotalMinutes:0} min (last: {last}); the cluster is still running: {Folder}");
    }

    /// <summary>
    /// The settings a hot standby needs at least as high as the primary's, from pg_controldata's output: the primary's
    /// value, and never below the defaults this command used before (200 connections, 10 WAL senders).
    /// </summary>
    public static IReadOnlyDictionary<string, int> StandbySettings(string controlData)
    {
        var floors = new Dictionary<string, (string Label, int Floor)>
        {
            ["max_connections"] = ("max_connections setting", 200),
            ["max_worker_processes"] = ("max_worker_processes setting", 8),
            ["max_wal_senders"] = ("max_wal_senders setting", 10),
            ["max_prepared_transactions"] = ("max_prepared_xacts setting", 0),
            ["max_locks_per_transaction"] = ("max_locks_per_xact setting", 64),
        };
        var values = controlData.Split('\n')
            .Select(line => line.Split(':', 2))
            .Where(parts => parts.Length == 2)
            .ToDictionary(parts => parts[0].Trim(), parts => parts[1].Trim(), StringComparer.Ordinal);
        return floors.ToDictionary(
            setting => setting.Key,
            setting => values.TryGetValue(setting.Value.Label, out var text) && int.TryParse(text, out var primary)
                ? Math.Max(primary, setting.Value.Floor)
                : setting.Value.Floor);
    }

    private string LogTail() =>
        File.Exists(LogFile) ? string.Join(" | ", File.ReadLines(LogFile).Where(l => l.Contains("FATAL", StringComparison.Ordinal) || l.Contains("ERROR", StringComparison.Ordinal) || l.Contains("LOG:  recovery", StringComparison.Ordinal)).TakeLast(4)) : "";
}
