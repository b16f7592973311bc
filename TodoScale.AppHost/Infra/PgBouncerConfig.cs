namespace TodoScale.AppHost.Infra;

/// <summary>
/// PgBouncer for process mode's primary (--Infra:Pooler=pgbouncer): its configuration and auth file under the data
/// root, written before every start (the ports change from run to run).
/// </summary>
public static class PgBouncerConfig
{
    /// <summary>The one login the pooler accepts: the API's role, which row-level security applies to.</summary>
    public const string Login = "todoscale_app";

    public static string Folder(string dataRoot) => Path.Combine(dataRoot, "pgbouncer");

    public static string ConfigPath(string dataRoot) => Path.Combine(Folder(dataRoot), "pgbouncer.ini");

    /// <summary>Writes pgbouncer.ini and its auth file (owner-only: it holds the login's password).</summary>
    public static string Write(string dataRoot, int listenPort, int primaryPort, int poolSize, string password)
    {
        var folder = Directory.CreateDirectory(Folder(dataRoot)).FullName;
        var users = Path.Combine(folder, "userlist.txt");
        File.WriteAllText(users, $"\"{Login}\" \"{password.Replace("\"", "\"\"", StringComparison.Ordinal)}\"\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(users, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        var path = ConfigPath(dataRoot);
        File.WriteAllText(path, Render(users, listenPort, primaryPort, poolSize));
        return path;
    }

    /// <summary>
    /// Transaction pooling: a server connection serves one client transaction at a time, so the API's SET LOCAL
    /// tenant scope (which ends with its transaction) is all the state a server connection carries from one client
    /// to the next. Clients log in with SCRAM against the auth file; PgBouncer logs in to the primary as the same
    /// role with the same password. Only the API's login is listed, so nothing else reaches the primary this way.
    /// </summary>
    public static string Render(string authFile, int listenPort, int primaryPort, int poolSize) => $"""
        ; Written by the TodoScale AppHost on every start (process mode, --Infra:Pooler=pgbouncer); edits are lost.
        [databases]
        {Infrastructure.DatabaseName} = host=127.0.0.1 port={primaryPort} dbname={Infrastructure.DatabaseName}

        [pgbouncer]
        listen_addr = 127.0.0.1
        listen_port = {listenPort}
        unix_socket_dir =
        auth_type = scram-sha-256
        auth_file = {authFile}
        pool_mode = transaction
        default_pool_size = {poolSize}
        min_pool_size = 0
        reserve_pool_size = 0
        max_client_conn = 2000
        max_db_connections = {poolSize}
        server_reset_query =
        server_check_query = select 1
        server_lifetime = 3600
        server_idle_timeout = 600
        ignore_startup_parameters = extra_float_digits
        log_connections = 0
        log_disconnections = 0
        log_pooler_errors = 1
        stats_period = 60

        """.ReplaceLineEndings("\n");
}
