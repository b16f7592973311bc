using Microsoft.Extensions.Configuration;
using System.Diagnostics;

namespace TodoScale.AppHost.Infra;

public enum InfraMode
{
    /// <summary>Containers where a Docker or Podman engine answers, local processes otherwise.</summary>
    Auto,

    /// <summary>Aspire's container integrations (PostgreSQL, Redis) plus Prometheus and Grafana containers.</summary>
    Container,

    /// <summary>PostgreSQL, redis-server and prometheus from the local install, run as executables.</summary>
    Process,
}

public enum DatabaseEngine
{
    /// <summary>One PostgreSQL primary and its streaming hot standby.</summary>
    Postgres,

    /// <summary>A Citus cluster: a coordinator (behind `todos`), its hot standby (`todos-replica`) and Infra:CitusWorkers workers.</summary>
    Citus,
}

public enum PoolerKind
{
    /// <summary>The API connects to the primary itself (its own Npgsql pool).</summary>
    None,

    /// <summary>PgBouncer (the local install) in transaction mode between the API and the primary.</summary>
    PgBouncer,
}

/// <summary>
/// The `Infra` configuration section: `--Infra:Mode=auto|container|process` on the command line,
/// `Infra__Mode` in the environment, or appsettings.json.
/// </summary>
public sealed class InfraOptions
{
    public const string SectionName = "Infra";

    public InfraMode Mode { get; set; } = InfraMode.Auto;

    /// <summary>`--Infra:Database=postgres|citus`: the engine behind the connection strings.</summary>
    public DatabaseEngine Database { get; set; } = DatabaseEngine.Postgres;

    /// <summary>
    /// `--Infra:Pooler=none|pgbouncer`: what stands between the API and the primary (process mode on PostgreSQL).
    /// Off by default: bench/results (the pooler workload) has what it gains and costs on this stack.
    /// </summary>
    public PoolerKind Pooler { get; set; } = PoolerKind.None;

    /// <summary>The server connections PgBouncer keeps to the primary for the API (its default_pool_size), 1 to 500.</summary>
    public int PoolerPoolSize { get; set; } = 20;

    /// <summary>
    /// Process mode on PostgreSQL: archive the primary's WAL to a pgBackRest repository and let the archiver take
    /// backups (default). `--Infra:Backups=false` for a stack whose disk cannot hold the WAL archive as well: the
    /// bench's (a medium run's 20M rows, their baselines and the streaming replica filled 75 GB with it; its backup
    /// figures come from `--workload backup`, which keeps it on).
    /// </summary>
    public bool Backups { get; set; } = true;

    /// <summary>How many Citus workers process mode starts with --Infra:Database=citus (1 to 8).</summary>
    public int CitusWorkers { get; set; } = 2;

    /// <summary>Where process mode keeps its data folders (default: .data at the repository root).</summary>
    public string? DataRoot { get; set; }

    /// <summary>Wipe the process-mode data folders before starting (a fresh cluster, cache and TSDB).</summary>
    public bool Reset { get; set; }

    /// <summary>
    /// Container mode: start Grafana (default). Off where its image cannot be had (an air-gapped machine that builds
    /// the other images from images/: Grafana is not in Debian); its dashboards' queries still run in Prometheus.
    /// </summary>
    public bool Grafana { get; set; } = true;

    /// <summary>
    /// Container mode: whether containers reach the services on the host through Aspire's container tunnel (its
    /// default). Unset: on, except under Podman older than 5.0, where the tunnel never starts (measured with Podman
    /// 4.3.1, Debian 12's); then the api and archiver listen on every interface themselves and containers reach them
    /// at the engine's host name (host.containers.internal).
    /// </summary>
    public bool? ContainerTunnel { get; set; }

    /// <summary>The tunnel setting resolved against the engine that runs the containers.</summary>
    public bool UsesContainerTunnel(string runtime, string? engineVersion) =>
        ContainerTunnel ?? !(runtime.EndsWith("podman", StringComparison.Ordinal)
                             && Version.TryParse(engineVersion?.Split('-')[0], out var version) && version.Major < 5);

    /// <summary>How often Prometheus scrapes the services.</summary>
    public string ScrapeInterval { get; set; } = "5s";

    /// <summary>
    /// When set (a Prometheus duration such as 5s), every alert's `for` is this instead of the rule file's: for
    /// tests that watch an alert fire. Unset in normal use.
    /// </summary>
    public string? AlertFor { get; set; }

    /// <summary>
    /// The Alertmanager configuration to run with: dashboards/alertmanager/alertmanager.yml when unset (every alert to
    /// the archiver's webhook receiver), or an SRE's own file with their pager's receivers, used as it is.
    /// </summary>
    public string? AlertmanagerConfig { get; set; }

    /// <summary>
    /// When set (a duration such as 2s), Alertmanager sends a group's first notification after 1 s and repeats it at
    /// this interval instead of the routing file's (30 s, then hours): for tests that watch notifications and silences.
    /// Applies to the default routing file only.
    /// </summary>
    public string? AlertRepeatInterval { get; set; }

    /// <summary>
    /// Extra PostgreSQL server settings for both servers in process mode, e.g.
    /// `--Infra:PostgresSettings:shared_buffers=2GB` (the benchmark sizes the servers this way).
    /// </summary>
    public Dictionary<string, string> PostgresSettings { get; set; } = [];

    /// <summary>
    /// The most WAL the primary keeps for the replica's replication slot while the replica is away (PostgreSQL
    /// max_slot_wal_keep_size: `4GB`, `512MB`, or -1 for no limit). Past it the slot is lost and the replica is
    /// cloned again at its next start; until then the replica catches up from where it stopped.
    /// </summary>
    public string MaxSlotWalKeepSize { get; set; } = "4GB";

    /// <summary>The settings as postgres.sh takes them: `name=value` words, each checked so none can inject anything.</summary>
    public string PostgresSettingsArgument()
    {
        foreach (var (name, value) in PostgresSettings)
        {
            if (!System.Text.RegularExpressions.Regex.IsMatch(name, "^[a-z_][a-z0-9_.]*$")
                || !System.Text.RegularExpressions.Regex.IsMatch(value, "^[A-Za-z0-9_.:-]+$"))
            {
                throw new InvalidOperationException(
                    $"Infra:PostgresSettings:{name}={value} is not a PostgreSQL setting name with a plain value (letters, digits, _ . : -).");
            }
        }

        return string.Join(' ', PostgresSettings.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"));
    }

    public static InfraOptions Read(IDistributedApplicationBuilder builder)
    {
        var options = new InfraOptions();
        var section = builder.Configuration.GetSection(SectionName);
        if (section["Mode"] is { Length: > 0 } mode && !Enum.TryParse(mode, ignoreCase: true, out InfraMode _))
        {
            throw new InvalidOperationException($"Infra:Mode must be auto, container or process (was '{mode}').");
        }

        if (section["Database"] is { Length: > 0 } engine && !Enum.TryParse(engine, ignoreCase: true, out DatabaseEngine _))
        {
            throw new InvalidOperationException($"Infra:Database must be postgres or citus (was '{engine}').");
        }

        if (section["Pooler"] is { Length: > 0 } pooler && !Enum.TryParse(pooler, ignoreCase: true, out PoolerKind _))
        {
            throw new InvalidOperationException($"Infra:Pooler must be none or pgbouncer (was '{pooler}').");
        }

        section.Bind(options);
        if (options.PoolerPoolSize is < 1 or > 500)
        {
            throw new InvalidOperationException($"Infra:PoolerPoolSize must be from 1 to 500 (was {options.PoolerPoolSize}).");
        }

        if (options.Pooler == PoolerKind.PgBouncer && options.Database == DatabaseEngine.Citus)
        {
            // The coordinator connects to the workers as the session's user: a pooled login as todoscale_app would need
            // that role's password on every node (pg_dist_authinfo), which TodoScale does not manage yet.
            throw new InvalidOperationException(
                "Infra:Pooler=pgbouncer runs on PostgreSQL only (--Infra:Database=postgres): on Citus the coordinator would log in " +
                "to the workers as the pooled role, whose password the workers do not have.");
        }

        if (options.CitusWorkers is < 1 or > 8)
        {
            throw new InvalidOperationException($"Infra:CitusWorkers must be from 1 to 8 (was {options.CitusWorkers}).");
        }

        if (options.AlertFor is { } alertFor && !System.Text.RegularExpressions.Regex.IsMatch(alertFor, "^[0-9]+(ms|s|m|h)$"))
        {
            throw new InvalidOperationException($"Infra:AlertFor must be a Prometheus duration such as 5s or 1m (was '{alertFor}').");
        }

        if (options.AlertRepeatInterval is { } repeat && !System.Text.RegularExpressions.Regex.IsMatch(repeat, "^[0-9]+(ms|s|m|h)$"))
        {
            throw new InvalidOperationException($"Infra:AlertRepeatInterval must be a duration such as 2s or 1m (was '{repeat}').");
        }

        if (options.AlertmanagerConfig is { } own && !File.Exists(own))
        {
            throw new InvalidOperationException($"Infra:AlertmanagerConfig names {own}, which does not exist.");
        }

        _ = options.PostgresSettingsArgument(); // a bad setting stops the AppHost here, naming it
        if (!System.Text.RegularExpressions.Regex.IsMatch(options.MaxSlotWalKeepSize, "^(-1|[0-9]+(kB|MB|GB|TB))$"))
        {
            throw new InvalidOperationException(
                $"Infra:MaxSlotWalKeepSize must be a size such as 4GB or 512MB, or -1 for no limit (was '{options.MaxSlotWalKeepSize}').");
        }

        options.ContainerRuntime = builder.Configuration["ASPIRE_CONTAINER_RUNTIME"] is { Length: > 0 } runtime ? runtime : "docker";
        options.DataRoot = Path.GetFullPath(options.DataRoot ?? Path.Combine(builder.AppHostDirectory, "..", ".data"));
        return options;
    }

    /// <summary>The mode to run in: `auto` asks the container engine whether it answers.</summary>
    public InfraMode ResolveMode() => Mode switch
    {
        InfraMode.Auto => ContainerEngineAnswers() ? InfraMode.Container : InfraMode.Process,
        var explicitMode => explicitMode,
    };

    private bool ContainerEngineAnswers() => EngineAnswers(ContainerRuntime);

    /// <summary>
    /// The engine Aspire's DCP drives: docker unless the configuration's ASPIRE_CONTAINER_RUNTIME (the environment
    /// variable, or `--ASPIRE_CONTAINER_RUNTIME=podman` on the command line, as DCP reads it) says otherwise.
    /// </summary>
    public string ContainerRuntime { get; private set; } = "docker";

    /// <summary>
    /// Whether the engine's server answers: `version --format {{.Server.Version}}` prints it on both Docker and
    /// Podman (Podman's `info` has no ServerVersion, so asking that made auto mode miss a working Podman), and a
    /// Docker client without a daemon exits non-zero.
    /// </summary>
    public static bool EngineAnswers(string runtime) => EngineVersion(runtime) is not null;

    /// <summary>The engine server's version (`version --format {{.Server.Version}}`), or null when it does not answer.</summary>
    public static string? EngineVersion(string runtime)
    {
        try
        {
            using var process = Process.Start(new ProcessStartInfo(runtime, ["version", "--format", "{{.Server.Version}}"])
            {
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            });
            if (process is null)
            {
                return null;
            }

            var output = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            if (!process.WaitForExit(TimeSpan.FromSeconds(10)))
            {
                process.Kill(entireProcessTree: true);
                return null;
            }

            return process.ExitCode == 0 && output.Wait(TimeSpan.FromSeconds(1)) && output.Result.Trim() is { Length: > 0 } version ? version : null;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return null; // no such client on PATH
        }
    }
}
