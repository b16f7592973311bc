namespace TodoScale.AppHost.Infra;

/// <summary>
/// Container mode: Aspire's PostgreSQL and Redis integrations, a streaming hot standby of the primary, and
/// Prometheus and Grafana (provisioned from dashboards/grafana). Image tags are pinned.
/// </summary>
public sealed class ContainerInfrastructure : Infrastructure
{
    public const string PostgresImageTag = "15.14";
    public const string RedisImageTag = "7.4.6";
    public const string PrometheusImage = "prom/prometheus";
    public const string PrometheusImageTag = "v2.55.1";
    public const string GrafanaImage = "grafana/grafana";
    public const string GrafanaImageTag = "11.6.6";
    public const string AlertmanagerImage = "prometheus/alertmanager";
    public const string AlertmanagerImageTag = "v0.25.0";
    public const string PostgresExporterImage = "prometheuscommunity/postgres-exporter";
    public const string PostgresExporterImageTag = "v0.11.1";

    /// <summary>With --Infra:Database=citus every PostgreSQL container (coordinator, standby, workers): Citus 13.0 on PostgreSQL 15.</summary>
    public const string CitusImage = "citusdata/citus";
    public const string CitusImageTag = "13.0";

    private const string PrimaryServer = "postgres";

    /// <summary>Where the Prometheus container finds the prometheus.yml the AppHost generates for it.</summary>
    public const string PrometheusConfigDirectory = "/etc/prometheus/generated";

    /// <summary>Where the Alertmanager container finds the alertmanager.yml the AppHost generates for it.</summary>
    public const string AlertmanagerConfigDirectory = "/etc/alertmanager/generated";

    /// <summary>Shared memory for the servers' parallel queries (Docker's default /dev/shm is 64 MB).</summary>
    public const string ShmSize = "256m";

    /// <summary>Whether containers reach the services through Aspire's container tunnel (Infra:ContainerTunnel).</summary>
    public bool UsesTunnel { get; }

    private readonly IResourceBuilder<PostgresServerResource> _server;
    private readonly IResourceBuilder<PostgresContainerResource> _replica;

    public ContainerInfrastructure(IDistributedApplicationBuilder builder, InfraOptions options) : base(builder, options)
    {
        var citus = options.Database == DatabaseEngine.Citus;

        if (options.Pooler != PoolerKind.None)
        {
            throw new InvalidOperationException(
                "Infra:Pooler=pgbouncer runs in process mode (--Infra:Mode=process), with the local PgBouncer; container mode has no pooler.");
        }

        // Aspire's container tunnel (how a container reaches the services on the host) unless the engine cannot run it.
        UsesTunnel = options.UsesContainerTunnel(options.ContainerRuntime, InfraOptions.EngineVersion(options.ContainerRuntime));
        if (!UsesTunnel)
        {
            builder.Configuration["ASPIRE_ENABLE_CONTAINER_TUNNEL"] = "false";
        }

        // Kept in the data root like process mode's, so a kept volume and a new run agree on it.
        var password = builder.AddParameter("postgres-password", KeptSecret("postgres.password"), secret: true);
        var settings = ServerSettings(options);
        string[] serverArgs = [.. settings.SelectMany(setting => new[] { "-c", setting })];
        var initDirectory = Path.Combine(builder.AppHostDirectory, "Infra", "container-init");
        // On Citus the primary is the coordinator and the replica its hot standby (README, "TodoScale on Citus"), the
        // volumes named as process mode names its folders.
        var server = builder.AddPostgres(PrimaryServer, password: password)
            .WithImageTag(PostgresImageTag)
            .WithDataVolume(VolumeName(citus ? "citus-coordinator" : "postgres-primary"))
            .WithInitFiles(initDirectory) // lets the replica connect for replication
            .WithContainerRuntimeArgs($"--shm-size={ShmSize}")
            .WithArgs(serverArgs);
        if (citus)
        {
            // The Citus image's way for the nodes to log in to each other: the server keeps PGPASSWORD, which its
            // entrypoint, unlike postgres', does not unset (libpq inside the server reads it).
            server.WithImage(CitusImage, CitusImageTag).WithImageRegistry("docker.io").WithEnvironment("PGPASSWORD", password);
        }

        var todos = server.AddDatabase(Todos, DatabaseName);

        var replica = AddServerContainer(TodosReplica, password, citus ? "citus-coordinator-standby" : "postgres-replica")
            .WithEnvironment("PRIMARY_HOST", PrimaryServer)
            .WithEnvironment("PRIMARY_PORT", "5432")
            .WithEnvironment("PGPASSWORD", password)
            .WithEnvironment("POSTGRES_SETTINGS", string.Join(' ', settings))
            .WithEntrypoint("bash")
            .WithArgs("-c", ReplicaScript(builder.AppHostDirectory))
            .WaitFor(todos)
            .WithPostgresHealthCheck();

        if (citus)
        {
            // Workers made as the official image's compose file makes them, the database created (and the extension
            // in it) by the image's init; citus.sh, in a container of the same image, forms the cluster by the names
            // the nodes have on the engine's network.
            var workers = Enumerable.Range(1, options.CitusWorkers).Select(i =>
                AddServerContainer($"citus-worker-{i}", password, $"citus-worker-{i}")
                    .WithEnvironment("POSTGRES_PASSWORD", password)
                    .WithEnvironment("POSTGRES_DB", DatabaseName)
                    .WithEnvironment("PGPASSWORD", password)
                    .WithArgs(serverArgs)
                    .WithPostgresHealthCheck()).ToList();
            // It stays up once the cluster is formed (citus.sh, STAY_UP), healthy when the coordinator lists every
            // worker: a container that exits at once races Podman's network connect.
            var cluster = builder.AddContainer(ProcessInfrastructure.CitusCluster, CitusImage, CitusImageTag)
                .WithImageRegistry("docker.io")
                .WithEnvironment("POSTGRES_PASSWORD", password)
                .WithEnvironment("STAY_UP", "1")
                .WithEntrypoint("bash")
                .WithArgs(["-c", Script(builder.AppHostDirectory, "citus.sh"), "citus.sh", DatabaseName, $"{PrimaryServer}:5432",
                    .. workers.Select(w => $"{w.Resource.Name}:5432")])
                .WithCitusClusterHealthCheck(todos.Resource, options.CitusWorkers)
                .WaitFor(todos);
            foreach (var worker in workers)
            {
                cluster.WaitFor(worker);
            }

            ClusterSetup = cluster;
            ClusterSetupStaysUp = true;
        }

        var redisPassword = builder.AddParameter("redis-password", KeptSecret("redis.password"), secret: true);
        var cache = builder.AddRedis(Cache, password: redisPassword).WithImageTag(RedisImageTag);

        _server = server;
        _replica = replica;
        TodosDatabase = todos;
        TodosReplicaDatabase = replica;
        CacheServer = cache;
    }

    /// <summary>
    /// The servers' settings, the same as process mode's postgres.sh gives both of its servers: its connection
    /// limit, the replica slot's WAL bound, full-page images compressed (lz4) and Infra:PostgresSettings (checked words, name=value). On Citus also what
    /// postgres.sh gives a Citus node: logical WAL (the online rebalancer), no SSL between the nodes and room for
    /// Citus' background workers (a standby needs at least its primary's max_worker_processes).
    /// </summary>
    public static IReadOnlyList<string> ServerSettings(InfraOptions options) =>
    [
        "max_connections=200",
        "max_wal_senders=10",
        $"max_slot_wal_keep_size={options.MaxSlotWalKeepSize}",
        "wal_compression=lz4",
        .. options.Database == DatabaseEngine.Citus
            ? new[] { "wal_level=logical", "citus.node_conninfo=sslmode=disable", "max_worker_processes=32" }
            : [],
        .. options.PostgresSettingsArgument().Split(' ', StringSplitOptions.RemoveEmptyEntries),
    ];

    /// <summary>The replica's entrypoint script (Infra/container-replica.sh), with LF line ends whatever the checkout did.</summary>
    public static string ReplicaScript(string appHostDirectory) => Script(appHostDirectory, "container-replica.sh");

    /// <summary>A script of Infra/, handed to a container as `bash -c` text, with LF line ends whatever the checkout did.</summary>
    public static string Script(string appHostDirectory, string name) =>
        File.ReadAllText(Path.Combine(appHostDirectory, "Infra", name)).ReplaceLineEndings("\n");

    /// <summary>
    /// A PostgreSQL container of this stack besides Aspire's primary (the standby, a Citus worker): the primary's image,
    /// its data in a volume of its own, the same shared memory.
    /// </summary>
    private IResourceBuilder<PostgresContainerResource> AddServerContainer(string name, IResourceBuilder<ParameterResource> password, string volume)
    {
        var citus = Options.Database == DatabaseEngine.Citus;
        return Builder.AddResource(new PostgresContainerResource(name, password.Resource))
            .WithImage(citus ? CitusImage : "library/postgres", citus ? CitusImageTag : PostgresImageTag)
            .WithImageRegistry("docker.io")
            .WithEndpoint(name: PostgresContainerResource.EndpointName, targetPort: 5432, scheme: "tcp")
            .WithVolume(VolumeName(volume), "/var/lib/postgresql/data")
            .WithContainerRuntimeArgs($"--shm-size={ShmSize}");
    }

    /// <summary>
    /// A volume of this stack: named after its data root, so two stacks on one machine (a developer's and a test's)
    /// never share a database, and the default data root keeps one stable name across runs.
    /// </summary>
    public string VolumeName(string what) => $"todoscale-{StackId(Options.DataRoot!)}-{what}";

    /// <summary>A short, stable id of a data root (8 hex digits of its path's SHA-256).</summary>
    public static string StackId(string dataRoot) =>
        Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(Path.GetFullPath(dataRoot))))[..8].ToLowerInvariant();

    public override IResourceBuilder<IResourceWithEndpoints> AddMonitoring(
        IResourceBuilder<ProjectResource> alertReceiver, params IResourceBuilder<ProjectResource>[] services)
    {
        // Every image fully qualified: Podman resolves a short name through registries.conf (or refuses it), not
        // as docker.io.
        var prometheus = Builder.AddContainer(Prometheus, PrometheusImage, PrometheusImageTag)
            .WithImageRegistry("docker.io")
            .WithBindMount(RulesDirectory(), "/etc/prometheus/rules", isReadOnly: true)
            .WithVolume(VolumeName("prometheus"), "/prometheus")
            .WithArgs($"--config.file={PrometheusConfigDirectory}/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.enable-lifecycle")
            .WithHttpEndpoint(name: "http", targetPort: 9090)
            .WithHttpHealthCheck("/-/ready");

        // The services run on the host. Each one's endpoint handed to the container makes it a dependency that Aspire
        // connects the container to (its container tunnel, aspire.dev.internal: Docker Engine on Linux and Podman do
        // not resolve host.docker.internal), and the scrape file is written with the address Aspire gives this
        // container for each, once it is known (container files are made after the endpoints are allocated).
        if (!UsesTunnel)
        {
            // Without the tunnel a container reaches the host at the engine's host name (host.containers.internal),
            // an address on the engine's bridge; DCP's proxies listen on loopback only (and on the addresses that
            // existed when it started: not the bridge Aspire creates after). So the services listen on every
            // interface themselves, unproxied (the API still demands its bearer token; /health and /metrics are open).
            foreach (var service in services)
            {
                service.WithEndpoint("http", endpoint =>
                {
                    endpoint.IsProxied = false;
                    endpoint.TargetHost = "0.0.0.0";
                });
            }
        }

        var endpoints = services.Select(s => (Job: s.Resource.Name, Endpoint: s.GetEndpoint("http"))).ToList();
        foreach (var (job, endpoint) in endpoints)
        {
            prometheus.WithEnvironment($"TODOSCALE_SCRAPE_{job.ToUpperInvariant()}", endpoint.Property(EndpointProperty.HostAndPort));
        }

        prometheus.WithContainerFiles(PrometheusConfigDirectory, async (context, cancellationToken) =>
        {
            var caller = new ValueProviderContext { Caller = context.Model, Network = KnownNetworkIdentifiers.DefaultAspireContainerNetwork };
            var targets = new List<ScrapeTarget>();
            foreach (var (job, endpoint) in endpoints)
            {
                targets.Add(new(job, (await endpoint.Property(EndpointProperty.HostAndPort).GetValueAsync(caller, cancellationToken))!));
            }

            // The exporters are containers on the same network: by name.
            targets.Add(new(PrometheusConfig.PostgresJob, $"{ProcessInfrastructure.PostgresExporter}:9187", "primary"));
            targets.Add(new(PrometheusConfig.PostgresJob, $"{ProcessInfrastructure.PostgresExporterReplica}:9187", "replica"));
            targets.Add(new(PrometheusConfig.AlertmanagerJob, $"{Alertmanager}:9093"));
            targets.Add(new(Prometheus, "localhost:9090"));
            return [new ContainerFile { Name = "prometheus.yml", Contents = PrometheusConfig.Render(Options.ScrapeInterval, "/etc/prometheus/rules/*.yml", $"{Alertmanager}:9093", targets) }];
        });

        // Alertmanager on the same network (Prometheus reaches it by name), its webhook receiver on the host as the
        // scrape targets are: the receiver's endpoint handed to the container, the file written with its address.
        var receiver = alertReceiver.GetEndpoint("http");
        Builder.AddContainer(Alertmanager, AlertmanagerImage, AlertmanagerImageTag)
            .WithImageRegistry("quay.io")
            .WithVolume(VolumeName("alertmanager"), "/alertmanager")
            .WithArgs($"--config.file={AlertmanagerConfigDirectory}/alertmanager.yml", "--storage.path=/alertmanager", "--cluster.listen-address=")
            .WithHttpEndpoint(name: "http", targetPort: 9093)
            .WithHttpHealthCheck("/-/ready")
            .WithEnvironment("TODOSCALE_ALERT_RECEIVER", receiver.Property(EndpointProperty.HostAndPort))
            .WithContainerFiles(AlertmanagerConfigDirectory, async (context, cancellationToken) =>
            {
                var caller = new ValueProviderContext { Caller = context.Model, Network = KnownNetworkIdentifiers.DefaultAspireContainerNetwork };
                var address = (await receiver.Property(EndpointProperty.HostAndPort).GetValueAsync(caller, cancellationToken))!;
                return [new ContainerFile { Name = "alertmanager.yml", Contents = AlertmanagerFile(address) }];
            });

        // The same exporters as process mode, reaching the servers by container name on the app network.
        var queries = Path.Combine(DashboardsDirectory, "prometheus", "postgres-exporter");
        AddPostgresExporter(ProcessInfrastructure.PostgresExporter, PrimaryServer, _server, queries);
        AddPostgresExporter(ProcessInfrastructure.PostgresExporterReplica, TodosReplica, _replica, queriesDirectory: null);

        if (!Options.Grafana)
        {
            return prometheus;
        }

        var grafana = Builder.AddContainer(Grafana, GrafanaImage, GrafanaImageTag)
            .WithImageRegistry("docker.io")
            .WithBindMount(Path.Combine(DashboardsDirectory, "grafana", "provisioning"), "/etc/grafana/provisioning", isReadOnly: true)
            .WithBindMount(Path.Combine(DashboardsDirectory, "grafana", "dashboards"), "/var/lib/grafana/dashboards", isReadOnly: true)
            .WithEnvironment("PROMETHEUS_URL", $"http://{Prometheus}:9090")
            .WithEnvironment("GF_AUTH_ANONYMOUS_ENABLED", "true")
            .WithEnvironment("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer")
            .WithHttpEndpoint(name: "http", targetPort: 3000)
            .WithHttpHealthCheck("/api/health")
            .WaitFor(prometheus);
        Builder.AnnounceWhenReady(grafana.Resource);

        return prometheus;
    }

    private void AddPostgresExporter(string name, string host, IResourceBuilder<IResource> server, string? queriesDirectory)
    {
        var exporter = Builder.AddContainer(name, PostgresExporterImage, PostgresExporterImageTag)
            .WithImageRegistry("quay.io")
            .WithEnvironment("DATA_SOURCE_URI", $"{host}:5432/{DatabaseName}?sslmode=disable")
            .WithEnvironment("DATA_SOURCE_USER", "postgres")
            .WithEnvironment("DATA_SOURCE_PASS", _server.Resource.PasswordParameter)
            .WithHttpEndpoint(name: "http", targetPort: 9187)
            .WithHttpHealthCheck("/")
            .WaitFor(server);
        if (queriesDirectory is not null)
        {
            exporter.WithBindMount(queriesDirectory, "/etc/postgres-exporter", isReadOnly: true)
                .WithArgs("--extend.query-path=/etc/postgres-exporter/queries.yml");
        }
    }
}

/// <summary>A PostgreSQL container beside Aspire's primary: its hot standby, or a Citus worker.</summary>
public sealed class PostgresContainerResource(string name, ParameterResource password)
    : ContainerResource(name), IResourceWithConnectionString
{
    public const string EndpointName = "tcp";

    public EndpointReference Endpoint => new(this, EndpointName);

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"Host={Endpoint.Property(EndpointProperty.Host)};Port={Endpoint.Property(EndpointProperty.Port)};Username=postgres;Password={password};Database={Infrastructure.DatabaseName}");
}
