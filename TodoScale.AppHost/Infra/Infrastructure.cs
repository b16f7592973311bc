using System.Security.Cryptography;
namespace TodoScale.AppHost.Infra;

/// <summary>
/// What the services see of the infrastructure, identical in both modes: the resources behind the connection
/// strings `todos`, `todos-replica` and `cache`, and a way to add `prometheus` scraping the given services.
/// </summary>
public abstract class Infrastructure(IDistributedApplicationBuilder builder, InfraOptions options)
{
    public const string Todos = "todos";
    public const string TodosReplica = "todos-replica";
    public const string Cache = "cache";
    public const string Prometheus = "prometheus";
    public const string Alertmanager = "alertmanager";
    public const string Grafana = "grafana";
    public const string DatabaseName = "todos";

    protected IDistributedApplicationBuilder Builder { get; } = builder;

    protected InfraOptions Options { get; } = options;

    /// <summary>The primary, behind the connection string `todos`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> TodosDatabase { get; protected init; } = null!;

    /// <summary>The streaming hot standby, behind `todos-replica`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> TodosReplicaDatabase { get; protected init; } = null!;

    /// <summary>
    /// What must have finished before `migrate` runs, beyond the primary being up: on Citus, the cluster's forming
    /// (the extension on every node, the workers added). Null on PostgreSQL.
    /// </summary>
    public IResourceBuilder<IResource>? ClusterSetup { get; protected init; }

    /// <summary>
    /// Whether <see cref="ClusterSetup"/> stays up once the cluster is formed (container mode: healthy then) instead
    /// of exiting (process mode: finished then).
    /// </summary>
    public bool ClusterSetupStaysUp { get; protected init; }

    /// <summary>
    /// pgBackRest's configuration file for the primary (process mode on PostgreSQL), handed to the archiver, which
    /// takes the backups; null where backups are not offered (container mode, Citus: README, "Backups").
    /// </summary>
    public string? BackupConfig { get; protected init; }

    /// <summary>What readies the backups (stanza, WAL archiving checked) before the archiver starts; null without backups.</summary>
    public IResourceBuilder<IResource>? BackupSetup { get; protected init; }

    /// <summary>Redis, behind `cache`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> CacheServer { get; protected init; } = null!;

    /// <summary>
    /// With --Infra:Pooler=pgbouncer, PgBouncer in front of the primary, started once <paramref name="migrate"/> has
    /// given todoscale_app its login; the API's `todos`. Null without a pooler.
    /// </summary>
    public virtual IResourceBuilder<IResourceWithConnectionString>? AddPooler(IResourceBuilder<ProjectResource> migrate) => null;

    /// <summary>
    /// Adds Prometheus (and, where it can run, Grafana) scraping /metrics of each service, and Alertmanager, to which
    /// Prometheus sends its alerts and which routes them (dashboards/alertmanager/alertmanager.yml) to
    /// <paramref name="alertReceiver"/>'s webhook (POST /alerts) unless Infra:AlertmanagerConfig names other receivers.
    /// </summary>
    public abstract IResourceBuilder<IResourceWithEndpoints> AddMonitoring(
        IResourceBuilder<ProjectResource> alertReceiver, params IResourceBuilder<ProjectResource>[] services);

    /// <summary>alertmanager.yml as this stack runs it, the receiver's webhook at <paramref name="receiverAddress"/> (host:port).</summary>
    protected string AlertmanagerFile(string receiverAddress) =>
        AlertmanagerConfig.Render(Options, Path.Combine(DashboardsDirectory, "alertmanager", "alertmanager.yml"), $"http://{receiverAddress}");

    /// <summary>
    /// Lets the service serve its http port itself instead of behind DCP's proxy, where the mode allows it (process
    /// mode; container mode decides in <see cref="AddMonitoring"/>). Under the bench's load DCP's proxy in front of
    /// the API took 1.9 of 21.8 CPU-seconds (9% of this 2-core machine, a sixth of what the API itself used) and a hop
    /// on every request. The port stays the launch profile's (5180) unless the ports are randomized (tests, bench),
    /// where a fixed one would collide with a developer's running stack: then DCP picks one.
    /// </summary>
    public virtual void ServeDirectly(IResourceBuilder<ProjectResource> service)
    {
    }

    /// <summary>The repository folder that holds dashboards/ (Prometheus rules, Grafana provisioning).</summary>
    protected string DashboardsDirectory => Path.GetFullPath(Path.Combine(Builder.AppHostDirectory, "..", "dashboards"));

    /// <summary>A folder under the data root that survives restarts (cold storage, ...), made when missing.</summary>
    public string DataFolder(string name) => Directory.CreateDirectory(Path.Combine(Options.DataRoot!, name)).FullName;

    /// <summary>
    /// The folder Prometheus loads its rules from: the repository's dashboards/prometheus/rules, or, with
    /// Infra:AlertFor set, a copy under the data root in which every alert's `for` is that duration (tests use it to
    /// see an alert fire in seconds; the rule files themselves stay as they are).
    /// </summary>
    protected string RulesDirectory()
    {
        var source = Path.Combine(DashboardsDirectory, "prometheus", "rules");
        if (Options.AlertFor is not { } alertFor)
        {
            return source;
        }

        var copy = Directory.CreateDirectory(Path.Combine(Options.DataRoot!, "prometheus-rules")).FullName;
        foreach (var stale in Directory.GetFiles(copy, "*.yml"))
        {
            File.Delete(stale);
        }

        foreach (var file in Directory.GetFiles(source, "*.yml"))
        {
            var text = System.Text.RegularExpressions.Regex.Replace(
                File.ReadAllText(file), @"^([ \t]+)for:[ \t]*\S+[ \t]*$", $"$1for: {alertFor}", System.Text.RegularExpressions.RegexOptions.Multiline);
            File.WriteAllText(Path.Combine(copy, Path.GetFileName(file)), text);
        }

        return copy;
    }

    /// <summary>
    /// A secret generated once and kept in the data root beside what it protects (owner-only file), so restarts keep
    /// it: a database password, or the bearer-token signing key the `token` verb also reads.
    /// </summary>
    public string KeptSecret(string fileName, int bytes = 16)
    {
        var path = Path.Combine(Options.DataRoot!, fileName);
        if (!File.Exists(path))
        {
            Directory.CreateDirectory(Options.DataRoot!);
            File.WriteAllText(path, Convert.ToHexString(RandomNumberGenerator.GetBytes(bytes)).ToLowerInvariant());
            if (!OperatingSystem.IsWindows())
            {
                File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            }
        }

        return File.ReadAllText(path).Trim();
    }

    public static Infrastructure Add(IDistributedApplicationBuilder builder)
    {
        var options = InfraOptions.Read(builder);
        return options.ResolveMode() switch
        {
            InfraMode.Container => new ContainerInfrastructure(builder, options),
            _ => new ProcessInfrastructure(builder, options),
        };
    }
}
