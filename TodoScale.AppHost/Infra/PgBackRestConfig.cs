namespace TodoScale.AppHost.Infra;

/// <summary>
/// pgBackRest for process mode's primary: its configuration file under the data root (written on every start; no
/// port in it, the callers pass the primary's port of the run), the repository beside the data it protects.
/// </summary>
public static class PgBackRestConfig
{
    public const string Stanza = "todos";

    /// <summary>The folder pgBackRest's files live in (its config, log and lock files) under the data root.</summary>
    public static string Folder(string dataRoot) => Path.Combine(dataRoot, "pgbackrest");

    public static string ConfigPath(string dataRoot) => Path.Combine(Folder(dataRoot), "pgbackrest.conf");

    /// <summary>The repository: full and differential backups and the archived WAL.</summary>
    public static string Repository(string dataRoot) => Path.Combine(dataRoot, "backups");

    /// <summary>Where the primary also listens on a Unix socket (pgBackRest reaches a local server only so).</summary>
    public static string SocketDirectory(string dataRoot) => Path.Combine(dataRoot, "run");

    /// <summary>Writes the configuration for the primary in <paramref name="primaryFolder"/>; returns its path.</summary>
    public static string Write(string dataRoot, string primaryFolder)
    {
        Directory.CreateDirectory(Folder(dataRoot));
        var path = ConfigPath(dataRoot);
        File.WriteAllText(path, Render(dataRoot, primaryFolder));
        return path;
    }

    public static string Render(string dataRoot, string primaryFolder) => $"""
        # Written by the TodoScale AppHost on every start (process mode); edits are lost. The primary's port is passed
        # on each command line (--pg1-port): it changes from run to run.
        [global]
        repo1-path={Repository(dataRoot)}
        log-path={Path.Combine(Folder(dataRoot), "log")}
        lock-path={Path.Combine(Folder(dataRoot), "lock")}
        spool-path={Path.Combine(Folder(dataRoot), "spool")}
        compress-type=zst
        start-fast=y
        process-max=2
        log-level-file=info

        [{Stanza}]
        pg1-path={primaryFolder}
        pg1-socket-path={SocketDirectory(dataRoot)}
        pg1-user=postgres

        """.ReplaceLineEndings("\n");
}
