using System.Globalization;

namespace TodoScale.AppHost.Infra;

/// <summary>
/// Process mode: PostgreSQL primary and streaming hot standby, redis-server and prometheus from the local
/// install, each an executable resource with a real health check. Data folders under Infra:DataRoot persist
/// between runs (Infra:Reset=true wipes them). Nothing is left running when the AppHost stops: postgres gets a
/// fast shutdown (postgres.sh), redis-server and prometheus stop on SIGTERM.
/// </summary>
public sealed class ProcessInfrastructure : Infrastructure
{
    public const string PostgresExporter = "postgres-exporter";
    public const string PostgresExporterReplica = "postgres-exporter-replica";
    public const string CitusCluster = "citus-cluster";
    public const string BackupSetupName = "backup-setup";
    public const string Pooler = "todos-pooler";

    /// <summary>The Citus workers (empty on PostgreSQL).</summary>
    public IReadOnlyList<IResourceBuilder<PostgresProcessResource>> Workers { get; } = [];

    private readonly string _dataRoot;
    private readonly IResourceBuilder<PostgresProcessResource> _primary;
    private readonly IResourceBuilder<PostgresProcessResource> _replica;

    public ProcessInfrastructure(IDistributedApplicationBuilder builder, InfraOptions options) : base(builder, options)
    {
        _dataRoot = options.DataRoot!;
        RequireLocalInstall(options.Database);
        PrepareDataRoot();

        var script = Path.Combine(builder.AppHostDirectory, "Infra", "postgres.sh");
        var postgresPassword = builder.AddParameter("postgres-password", KeptSecret("postgres.password"), secret: true);
        var redisSecret = KeptSecret("redis.password");
        var redisPassword = builder.AddParameter("redis-password", redisSecret, secret: true);

        // On Citus the primary is the coordinator and the replica its hot standby (README, "TodoScale on Citus").
        var citus = options.Database == DatabaseEngine.Citus;
        var primary = AddPostgres(Todos, script, "primary", citus ? "citus-coordinator" : "postgres-primary", postgresPassword, DatabaseName);
        var replica = AddPostgres(TodosReplica, script, "replica", citus ? "citus-coordinator-standby" : "postgres-replica", postgresPassword,
                primary.Resource.Endpoint.Property(EndpointProperty.Port))
            .WaitFor(primary);
        if (citus)
        {
            var ports = WorkerPorts(options.CitusWorkers);
            var workers = Enumerable.Range(1, options.CitusWorkers)
                .Select(i => AddPostgres($"citus-worker-{i}", script, "primary", $"citus-worker-{i}", postgresPassword, DatabaseName, ports[i - 1]))
                .ToList();
            var cluster = builder.AddExecutable(CitusCluster, "bash", _dataRoot)
                .WithEnvironment("POSTGRES_PASSWORD", postgresPassword)
                .WithArgs(context =>
                {
                    context.Args.Add(Path.Combine(builder.AppHostDirectory, "Infra", "citus.sh"));
                    context.Args.Add(DatabaseName);
                    context.Args.Add(ReferenceExpression.Create($"127.0.0.1:{primary.Resource.Endpoint.Property(EndpointProperty.Port)}"));
                    foreach (var worker in workers)
                    {
                        context.Args.Add(ReferenceExpression.Create($"127.0.0.1:{worker.Resource.Endpoint.Property(EndpointProperty.Port)}"));
                    }
                })
                .WaitFor(primary);
            foreach (var worker in workers)
            {
                cluster.WaitFor(worker);
            }

            Workers = workers;
            ClusterSetup = cluster;
        }
        else if (Options.Backups)
        {
            // Backups and point-in-time recovery with pgBackRest: every WAL segment of the primary archived to the
            // repository under the data root; the archiver takes the full and differential backups.
            var config = PgBackRestConfig.Write(_dataRoot, Path.Combine(_dataRoot, "postgres-primary"));
            primary
                .WithEnvironment("PGBACKREST_CONFIG", config)
                .WithEnvironment("SOCKET_DIR", PgBackRestConfig.SocketDirectory(_dataRoot));
            BackupConfig = config;
            BackupSetup = builder.AddExecutable(BackupSetupName, "bash", _dataRoot)
                .WithArgs(context =>
                {
                    context.Args.Add(Path.Combine(builder.AppHostDirectory, "Infra", "pgbackrest.sh"));
                    context.Args.Add(config);
                    context.Args.Add(primary.Resource.Endpoint.Property(EndpointProperty.Port));
                })
                .WaitFor(primary);
        }

        var redisDir = Path.Combine(_dataRoot, "redis");
        Directory.CreateDirectory(redisDir);
        // The password travels in a config file, not on the command line where ps would show it.
        var redisConfig = WriteRedisConfig(redisDir, redisSecret);
        var cache = builder.AddResource(new RedisProcessResource(Cache, "redis-server", redisDir, redisPassword.Resource))
            .WithEndpoint(name: RedisProcessResource.EndpointName, scheme: "tcp", isProxied: false)
            .WithArgs(context =>
            {
                var resource = (RedisProcessResource)context.Resource;
                context.Args.Add(redisConfig);
                context.Args.Add("--port");
                context.Args.Add(resource.Endpoint.Property(EndpointProperty.Port));
            })
            .WithRedisHealthCheck();

        _primary = primary;
        _replica = replica;
        TodosDatabase = primary;
        TodosReplicaDatabase = replica;
        CacheServer = cache;
    }

    public override IResourceBuilder<IResourceWithConnectionString>? AddPooler(IResourceBuilder<ProjectResource> migrate)
    {
        if (Options.Pooler != PoolerKind.PgBouncer)
        {
            return null;
        }

        // todoscale_app logs in itself through the pooler (a pooler cannot pass the role to switch to): migrate gives
        // it its login and this password, kept in the data root like the others.
        var secret = KeptSecret("app.password");
        var password = Builder.AddParameter("app-password", secret, secret: true);
        migrate.WithEnvironment("Schema__AppLoginPassword", password);

        var config = PgBouncerConfig.ConfigPath(_dataRoot);
        var pooler = Builder.AddResource(new PgBouncerProcessResource(Pooler, "bash", _dataRoot, password.Resource))
            .WithEndpoint(name: PgBouncerProcessResource.EndpointName, scheme: "tcp", isProxied: false)
            .WithArgs(Path.Combine(Builder.AppHostDirectory, "Infra", "pgbouncer.sh"), config)
            .WithPostgresHealthCheck()
            .WaitFor(_primary)
            .WaitForCompletion(migrate);
        Builder.Eventing.Subscribe<BeforeResourceStartedEvent>(pooler.Resource, async (_, cancellationToken) =>
        {
            var primaryPort = int.Parse(await _primary.Resource.Endpoint.Property(EndpointProperty.Port).GetValueAsync(cancellationToken) ?? "", CultureInfo.InvariantCulture);
            PgBouncerConfig.Write(_dataRoot, pooler.Resource.Endpoint.Port, primaryPort, Options.PoolerPoolSize, secret);
        });
        return pooler;
    }

    public override void ServeDirectly(IResourceBuilder<ProjectResource> service)
    {
        var randomized = string.Equals(Builder.Configuration["DcpPublisher:RandomizePorts"], "true", StringComparison.OrdinalIgnoreCase);
        service.WithEndpoint("http", endpoint =>
        {
            endpoint.IsProxied = false;
            if (randomized)
            {
                endpoint.Port = null;
                endpoint.TargetPort = null;
            }
        });
    }

    public override IResourceBuilder<IResourceWithEndpoints> AddMonitoring(
        IResourceBuilder<ProjectResource> alertReceiver, params IResourceBuilder<ProjectResource>[] services)
    {
        var alertmanager = AddAlertmanager(alertReceiver);
        var directory = Path.Combine(_dataRoot, "prometheus");
        var configPath = Path.Combine(directory, "prometheus.yml");
        var rulesGlob = Path.Combine(RulesDirectory(), "*.yml");

        var prometheus = Builder.AddExecutable(Prometheus, "prometheus", directory)
            .WithHttpEndpoint(name: "http", isProxied: false)
            .WithArgs(context =>
            {
                var endpoint = ((IResourceWithEndpoints)context.Resource).GetEndpoint("http");
                context.Args.Add($"--config.file={configPath}");
                context.Args.Add($"--storage.tsdb.path={Path.Combine(directory, "tsdb")}");
                context.Args.Add(ReferenceExpression.Create($"--web.listen-address=127.0.0.1:{endpoint.Property(EndpointProperty.Port)}"));
                context.Args.Add("--web.enable-lifecycle");
                context.Args.Add("--web.console.templates=/etc/prometheus/consoles");
                context.Args.Add("--web.console.libraries=/etc/prometheus/console_libraries");
            })
            .WithHttpHealthCheck("/-/ready");

        // Connections, database size and replication as PostgreSQL sees them, one exporter per server; the
        // primary's also runs dashboards/prometheus/postgres-exporter/queries.yml (replay lag in seconds).
        var queries = Path.Combine(DashboardsDirectory, "prometheus", "postgres-exporter", "queries.yml");
        var primaryExporter = AddPostgresExporter(PostgresExporter, _primary, queries);
        var replicaExporter = AddPostgresExporter(PostgresExporterReplica, _replica, queries: null);

        var self = prometheus.GetEndpoint("http");
        Builder.Eventing.Subscribe<BeforeResourceStartedEvent>(prometheus.Resource, (_, _) =>
        {
            var alertmanagerAddress = PrometheusConfig.Address(alertmanager, host => host);
            PrometheusConfig.Write(configPath, Options.ScrapeInterval, rulesGlob, alertmanagerAddress,
            [
                .. PrometheusConfig.Targets(services, host => host),
                new(PrometheusConfig.PostgresJob, PrometheusConfig.Address(primaryExporter, host => host), "primary"),
                new(PrometheusConfig.PostgresJob, PrometheusConfig.Address(replicaExporter, host => host), "replica"),
                new(PrometheusConfig.AlertmanagerJob, alertmanagerAddress),
                new(Prometheus, $"127.0.0.1:{self.Port}"),
            ]);
            return Task.CompletedTask;
        });

        return prometheus;
    }

    /// <summary>
    /// prometheus-alertmanager (apt) on 127.0.0.1, one instance (no cluster gossip), its silences and notification
    /// log kept in the data root; alertmanager.yml written before each start with the receiver's allocated address.
    /// </summary>
    private IResourceBuilder<ExecutableResource> AddAlertmanager(IResourceBuilder<ProjectResource> receiver)
    {
        var directory = Path.Combine(_dataRoot, "alertmanager");
        var configPath = Path.Combine(directory, "alertmanager.yml");
        var alertmanager = Builder.AddExecutable(Alertmanager, "prometheus-alertmanager", directory)
            .WithHttpEndpoint(name: "http", isProxied: false)
            .WithArgs(context =>
            {
                var endpoint = ((IResourceWithEndpoints)context.Resource).GetEndpoint("http");
                context.Args.Add($"--config.file={configPath}");
                context.Args.Add($"--storage.path={Path.Combine(directory, "data")}");
                context.Args.Add(ReferenceExpression.Create($"--web.listen-address=127.0.0.1:{endpoint.Property(EndpointProperty.Port)}"));
                context.Args.Add("--cluster.listen-address=");
            })
            .WithHttpHealthCheck("/-/ready");
        Builder.Eventing.Subscribe<BeforeResourceStartedEvent>(alertmanager.Resource, (_, _) =>
        {
            Directory.CreateDirectory(directory);
            File.WriteAllText(configPath, AlertmanagerFile(PrometheusConfig.Address(receiver, host => host)));
            return Task.CompletedTask;
        });
        return alertmanager;
    }

    /// <summary>
    /// prometheus-postgres-exporter (apt) for one server, on 127.0.0.1. The password travels in the environment
    /// (DATA_SOURCE_PASS), not on the command line.
    /// </summary>
    private IResourceBuilder<ExecutableResource> AddPostgresExporter(
        string name, IResourceBuilder<PostgresProcessResource> server, string? queries) =>
        Builder.AddExecutable(name, "prometheus-postgres-exporter", _dataRoot)
            .WithHttpEndpoint(name: "http", isProxied: false)
            .WithEnvironment("DATA_SOURCE_URI", ReferenceExpression.Create(
                $"127.0.0.1:{server.Resource.Endpoint.Property(EndpointProperty.Port)}/{DatabaseName}?sslmode=disable"))
            .WithEnvironment("DATA_SOURCE_USER", "postgres")
            .WithEnvironment("DATA_SOURCE_PASS", ReferenceExpression.Create($"{server.Resource.Password}"))
            .WithArgs(context =>
            {
                var endpoint = ((IResourceWithEndpoints)context.Resource).GetEndpoint("http");
                context.Args.Add(ReferenceExpression.Create($"--web.listen-address=127.0.0.1:{endpoint.Property(EndpointProperty.Port)}"));
                context.Args.Add("--log.level=warn");
                if (queries is not null)
                {
                    context.Args.Add($"--extend.query-path={queries}");
                }
            })
            .WithHttpHealthCheck("/")
            .WaitFor(server);

    /// <summary>
    /// One PostgreSQL server run by postgres.sh: `postgres.sh role folder port last`, where the last argument is
    /// the database to create (primary) or the primary's port (replica).
    /// </summary>
    private IResourceBuilder<PostgresProcessResource> AddPostgres(
        string name, string script, string role, string folder, IResourceBuilder<ParameterResource> password,
        object lastArgument, int? port = null) =>
        Builder.AddResource(new PostgresProcessResource(name, "bash", _dataRoot, password.Resource))
            .WithEndpoint(name: PostgresProcessResource.EndpointName, scheme: "tcp", port: port, isProxied: false)
            .WithEnvironment("POSTGRES_PASSWORD", password)
            .WithEnvironment("POSTGRES_SETTINGS", Options.PostgresSettingsArgument())
            .WithEnvironment("MAX_SLOT_WAL_KEEP_SIZE", Options.MaxSlotWalKeepSize)
            .WithEnvironment("CITUS", Options.Database == DatabaseEngine.Citus ? "on" : "off")
            .WithArgs(context =>
            {
                var resource = (PostgresProcessResource)context.Resource;
                context.Args.Add(script);
                context.Args.Add(role);
                context.Args.Add(Path.Combine(_dataRoot, folder));
                context.Args.Add(resource.Endpoint.Property(EndpointProperty.Port));
                context.Args.Add(lastArgument);
            })
            .WithPostgresHealthCheck();

    /// <summary>
    /// The Citus workers' ports, the same on every run of one data root (saved in citus-worker-ports): the coordinator
    /// lists its workers by host and port, and Citus cannot move one node while another is unreachable at an old
    /// port, so the workers keep theirs (the coordinator and the other servers take new ones each run).
    /// </summary>
    private int[] WorkerPorts(int count)
    {
        var path = Path.Combine(_dataRoot, "citus-worker-ports");
        var kept = File.Exists(path)
            ? File.ReadAllLines(path).Where(l => l.Length > 0).Select(l => int.Parse(l, System.Globalization.CultureInfo.InvariantCulture)).ToList()
            : [];
        while (kept.Count < count)
        {
            using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            listener.Start();
            var port = ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
            if (!kept.Contains(port))
            {
                kept.Add(port);
            }
        }

        File.WriteAllLines(path, kept.Select(p => p.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        return [.. kept.Take(count)];
    }

    private void PrepareDataRoot()
    {
        if (Options.Reset && Directory.Exists(_dataRoot))
        {
            Directory.Delete(_dataRoot, recursive: true);
        }

        Directory.CreateDirectory(_dataRoot);
        // postgres runs as its own user when the AppHost runs as root: it must be able to reach its folders.
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(_dataRoot, File.GetUnixFileMode(_dataRoot) | UnixFileMode.OtherExecute | UnixFileMode.GroupExecute);
        }
    }

    /// <summary>A generated secret kept in the data root, so it lives exactly as long as the data it protects.</summary>

    private static string WriteRedisConfig(string directory, string password)
    {
        var path = Path.Combine(directory, "redis.conf");
        File.WriteAllText(path, $"""
            # Generated by TodoScale.AppHost (process mode). A cache: nothing is persisted.
            bind 127.0.0.1
            protected-mode yes
            save ""
            appendonly no
            dir {directory}
            requirepass {password}
            """);
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return path;
    }

    private static void RequireLocalInstall(DatabaseEngine database)
    {
        if (database == DatabaseEngine.Citus && !Directory.EnumerateFiles("/usr/lib/postgresql", "citus.so", SearchOption.AllDirectories).Any())
        {
            throw new InvalidOperationException(
                "Infra:Database=citus needs the Citus extension installed for the local PostgreSQL: ./build.sh run --Infra:Database=citus " +
                "installs it (the postgresql-15-citus-13.0 package, or built once from CITUS_SOURCE).");
        }

        string[] missing =
        [
            .. Directory.Exists("/usr/lib/postgresql") && Directory.EnumerateFiles("/usr/lib/postgresql", "postgres", SearchOption.AllDirectories).Any()
                ? Array.Empty<string>() : ["postgresql-15"],
            .. OnPath("redis-server") ? Array.Empty<string>() : ["redis-server"],
            .. OnPath("prometheus") ? Array.Empty<string>() : ["prometheus"],
            .. OnPath("prometheus-postgres-exporter") ? Array.Empty<string>() : ["prometheus-postgres-exporter"],
            .. database == DatabaseEngine.Citus || OnPath("pgbackrest") ? Array.Empty<string>() : ["pgbackrest"],
        ];
        if (missing.Length > 0)
        {
            throw new InvalidOperationException(
                $"Infra:Mode=process needs {string.Join(", ", missing)} installed locally: apt-get install -y {string.Join(' ', missing)} " +
                "(./build.sh installs them), or run with a container engine and --Infra:Mode=container.");
        }
    }

    private static bool OnPath(string program) =>
        (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator)
            .Any(dir => File.Exists(Path.Combine(dir, program)));
}
