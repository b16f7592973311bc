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
    public const string PostgresExporterImage = "prometheuscommunity/postgres-exporter";
    public const string PostgresExporterImageTag = "v0.11.1";

    private const string PrimaryServer = "postgres";
    private const string ReplicaScript = """
        set -eu
        export PGDATA=/var/lib/postgresql/data
        slot=todos_replica
        until psql -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -d postgres -Atq -c "SELECT pg_create_physical_replication_slot('$slot', true)
                WHERE NOT EXISTS (SELECT FROM pg_replication_slots WHERE slot_name = '$slot')" >/dev/null; do
          echo "waiting for the primary"; sleep 1
        done
        if [ ! -s "$PGDATA/PG_VERSION" ]; then
          until pg_basebackup -h "$PRIMARY_HOST" -p "$PRIMARY_PORT" -U postgres -D "$PGDATA" -X stream -S "$slot" -R --checkpoint=fast; do
            echo "waiting for the primary"; rm -rf "$PGDATA"/*; sleep 1
          done
        fi
        chown -R postgres:postgres "$PGDATA"; chmod 700 "$PGDATA"
        exec gosu postgres postgres -D "$PGDATA" -c hot_standby=on -c hot_standby_feedback=on -c "primary_slot_name=$slot" \
          -c "primary_conninfo=host=$PRIMARY_HOST port=$PRIMARY_PORT user=postgres password=$PGPASSWORD application_name=todos_replica"
        """;

    private readonly IResourceBuilder<PostgresServerResource> _server;
    private readonly IResourceBuilder<PostgresReplicaContainerResource> _replica;

    public ContainerInfrastructure(IDistributedApplicationBuilder builder, InfraOptions options) : base(builder, options)
    {
        if (options.Database == DatabaseEngine.Citus)
        {
            throw new InvalidOperationException(
                "Infra:Database=citus runs in process mode only for now (--Infra:Mode=process); the citusdata/citus container " +
                "cluster comes with container mode's own work (issue 25).");
        }

        var initDirectory = Path.Combine(builder.AppHostDirectory, "Infra", "container-init");
        var server = builder.AddPostgres(PrimaryServer)
            .WithImageTag(PostgresImageTag)
            .WithDataVolume("todoscale-postgres-primary")
            .WithInitFiles(initDirectory) // lets the replica connect for replication
            .WithArgs("-c", $"max_slot_wal_keep_size={options.MaxSlotWalKeepSize}");
        var todos = server.AddDatabase(Todos, DatabaseName);

        var replica = builder.AddResource(new PostgresReplicaContainerResource(TodosReplica, server.Resource.PasswordParameter))
            .WithImage("library/postgres", PostgresImageTag)
            .WithImageRegistry("docker.io")
            .WithEndpoint(name: PostgresReplicaContainerResource.EndpointName, targetPort: 5432, scheme: "tcp")
            .WithVolume("todoscale-postgres-replica", "/var/lib/postgresql/data")
            .WithEnvironment("PRIMARY_HOST", PrimaryServer)
            .WithEnvironment("PRIMARY_PORT", "5432")
            .WithEnvironment("PGPASSWORD", server.Resource.PasswordParameter)
            .WithEntrypoint("bash")
            .WithArgs("-c", ReplicaScript)
            .WaitFor(todos)
            .WithPostgresHealthCheck();

        var cache = builder.AddRedis(Cache).WithImageTag(RedisImageTag);

        _server = server;
        _replica = replica;
        TodosDatabase = todos;
        TodosReplicaDatabase = replica;
        CacheServer = cache;
    }

    public override IResourceBuilder<IResourceWithEndpoints> AddMonitoring(params IResourceBuilder<ProjectResource>[] services)
    {
        var configDirectory = Path.Combine(Options.DataRoot!, "prometheus-container");
        Directory.CreateDirectory(configDirectory);

        var prometheus = Builder.AddContainer(Prometheus, PrometheusImage, PrometheusImageTag)
            .WithBindMount(configDirectory, "/etc/prometheus/generated", isReadOnly: true)
            .WithBindMount(RulesDirectory(), "/etc/prometheus/rules", isReadOnly: true)
            .WithVolume("todoscale-prometheus", "/prometheus")
            .WithArgs("--config.file=/etc/prometheus/generated/prometheus.yml", "--storage.tsdb.path=/prometheus", "--web.enable-lifecycle")
            .WithHttpEndpoint(name: "http", targetPort: 9090)
            .WithHttpHealthCheck("/-/ready");

        // The same exporters as process mode, reaching the servers by container name on the app network.
        var queries = Path.Combine(DashboardsDirectory, "prometheus", "postgres-exporter");
        AddPostgresExporter(ProcessInfrastructure.PostgresExporter, PrimaryServer, _server, queries);
        AddPostgresExporter(ProcessInfrastructure.PostgresExporterReplica, TodosReplica, _replica, queriesDirectory: null);

        Builder.Eventing.Subscribe<BeforeResourceStartedEvent>(prometheus.Resource, (_, _) =>
        {
            // The services run on the host; a container reaches them through host.docker.internal.
            PrometheusConfig.Write(Path.Combine(configDirectory, "prometheus.yml"), Options.ScrapeInterval, "/etc/prometheus/rules/*.yml",
            [
                .. PrometheusConfig.Targets(services, _ => "host.docker.internal"),
                new(PrometheusConfig.PostgresJob, $"{ProcessInfrastructure.PostgresExporter}:9187", "primary"),
                new(PrometheusConfig.PostgresJob, $"{ProcessInfrastructure.PostgresExporterReplica}:9187", "replica"),
                new(Prometheus, "localhost:9090"),
            ]);
            return Task.CompletedTask;
        });

        var grafana = Builder.AddContainer(Grafana, GrafanaImage, GrafanaImageTag)
            .WithBindMount(Path.Combine(DashboardsDirectory, "grafana", "provisioning"), "/etc/grafana/provisioning", isReadOnly: true)
            .WithBindMount(Path.Combine(DashboardsDirectory, "grafana", "dashboards"), "/var/lib/grafana/dashboards", isReadOnly: true)
            .WithEnvironment("PROMETHEUS_URL", $"http://{Prometheus}:9090")
            .WithEnvironment("GF_AUTH_ANONYMOUS_ENABLED", "true")
            .WithEnvironment("GF_AUTH_ANONYMOUS_ORG_ROLE", "Viewer")
            .WithHttpEndpoint(name: "http", targetPort: 3000)
            .WithHttpHealthCheck("/api/health")
            .WaitFor(prometheus);
        Builder.AnnounceWhenReady(grafana);

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

/// <summary>A PostgreSQL hot standby container that clones the primary and streams from it.</summary>
public sealed class PostgresReplicaContainerResource(string name, ParameterResource password)
    : ContainerResource(name), IResourceWithConnectionString
{
    public const string EndpointName = "tcp";

    public EndpointReference Endpoint => new(this, EndpointName);

    public ReferenceExpression ConnectionStringExpression => ReferenceExpression.Create(
        $"Host={Endpoint.Property(EndpointProperty.Host)};Port={Endpoint.Property(EndpointProperty.Port)};Username=postgres;Password={password};Database={Infrastructure.DatabaseName}");
}
