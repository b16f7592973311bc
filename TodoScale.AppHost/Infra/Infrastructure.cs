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
    public const string Grafana = "grafana";
    public const string DatabaseName = "todos";

    protected IDistributedApplicationBuilder Builder { get; } = builder;

    protected InfraOptions Options { get; } = options;

    /// <summary>The primary, behind the connection string `todos`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> TodosDatabase { get; protected init; } = null!;

    /// <summary>The streaming hot standby, behind `todos-replica`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> TodosReplicaDatabase { get; protected init; } = null!;

    /// <summary>Redis, behind `cache`.</summary>
    public IResourceBuilder<IResourceWithConnectionString> CacheServer { get; protected init; } = null!;

    /// <summary>Adds Prometheus (and, where it can run, Grafana) scraping /metrics of each service.</summary>
    public abstract IResourceBuilder<IResourceWithEndpoints> AddMonitoring(params IResourceBuilder<ProjectResource>[] services);

    /// <summary>The repository folder that holds dashboards/ (Prometheus rules, Grafana provisioning).</summary>
    protected string DashboardsDirectory => Path.GetFullPath(Path.Combine(Builder.AppHostDirectory, "..", "dashboards"));

    /// <summary>
    /// A secret generated once and kept in the data root beside what it protects (owner-only file), so restarts keep
    /// it: a database password, or the bearer-token signing key the `token` verb also reads.
    /// </summary>
    /// <summary>A folder under the data root that survives restarts (cold storage, ...), made when missing.</summary>
    public string DataFolder(string name) => Directory.CreateDirectory(Path.Combine(Options.DataRoot!, name)).FullName;

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
