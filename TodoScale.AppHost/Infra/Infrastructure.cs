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

    public abstract IResourceBuilder<IResourceWithConnectionString> TodosDatabase { get; }

    public abstract IResourceBuilder<IResourceWithConnectionString> TodosReplicaDatabase { get; }

    public abstract IResourceBuilder<IResourceWithConnectionString> CacheServer { get; }

    /// <summary>Adds Prometheus (and, where it can run, Grafana) scraping /metrics of each service.</summary>
    public abstract IResourceBuilder<IResourceWithEndpoints> AddMonitoring(params IResourceBuilder<ProjectResource>[] services);

    /// <summary>The repository folder that holds dashboards/ (Prometheus rules, Grafana provisioning).</summary>
    protected string DashboardsDirectory => Path.GetFullPath(Path.Combine(Builder.AppHostDirectory, "..", "dashboards"));

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
