using TodoScale.AppHost;
using TodoScale.AppHost.Infra;

var builder = DistributedApplication.CreateBuilder(args);
if (DeveloperCertificate.MissingFor(builder.Configuration) is { } missing)
{
    Console.Error.WriteLine(missing);
    return 1;
}

// Containers where a Docker/Podman engine answers, local processes otherwise (--Infra:Mode=auto|container|process).
// Both give the services the same connection strings: todos, todos-replica, cache.
var infra = Infrastructure.Add(builder);

// Applies the schema and exits; nothing else touches the database before it has finished.
var migrate = builder.AddProject<Projects.TodoScale_Archiver>("migrate", launchProfileName: null)
    .WithTodoScaleDefaults()
    .WithArgs("migrate")
    .WithReference(infra.TodosDatabase)
    .WaitFor(infra.TodosDatabase);
if (infra.ClusterSetup is { } clusterSetup)
{
    // On Citus: the workers are in the cluster before anything is distributed.
    if (infra.ClusterSetupStaysUp)
    {
        migrate.WaitFor(clusterSetup);
    }
    else
    {
        migrate.WaitForCompletion(clusterSetup);
    }
}

// The bearer-token signing key, generated once per data root (.data/auth-signing.key): the API validates with it,
// and `token` (the operators' CLI) signs development tokens with it.
var signingKey = builder.AddParameter("auth-signing-key", infra.KeptSecret("auth-signing.key", bytes: 32), secret: true);

// The API's `todos`: the primary, or PgBouncer in front of it (--Infra:Pooler=pgbouncer; README, "Connection pooling").
var pooler = infra.AddPooler(migrate);

var api = builder.AddProject<Projects.TodoScale_Api>("api")
    .WithTodoScaleDefaults()
    .WithEnvironment("Auth__SigningKey", signingKey)
    .WithReference(pooler ?? infra.TodosDatabase, Infrastructure.Todos)
    .WithReference(infra.TodosReplicaDatabase)
    .WithReference(infra.CacheServer)
    .WaitFor(infra.TodosReplicaDatabase)
    .WaitFor(infra.CacheServer)
    .WaitForCompletion(migrate)
    .WithHttpHealthCheck("/health");
if (pooler is not null)
{
    api.WithEnvironment("Database__Pooled", "true").WaitFor(pooler);
}

infra.ServeDirectly(api);

var archiver = builder.AddProject<Projects.TodoScale_Archiver>("archiver")
    .WithTodoScaleDefaults()
    .WithArgs("serve")
    .WithReference(infra.TodosDatabase)
    // Exported archive months (retention, `cold export`) beside the databases: .data/cold-storage.
    .WithEnvironment("Maintenance__ColdStorageFolder", infra.DataFolder("cold-storage"))
    .WaitForCompletion(migrate)
    .WithHttpHealthCheck("/health")
    // A button on the dashboard: one archival pass now, whatever the schedule's window.
    .WithHttpCommand("/archive/run", "Run archive now", commandName: "run-archive", commandOptions: new HttpCommandOptions
    {
        Method = HttpMethod.Post,
        Description = "Move finished todos (and old AI interactions) to the archive now, outside the daily window.",
        IconName = "Archive",
    });

if (infra.BackupConfig is { } backupConfig)
{
    // The archiver takes the backups (on its schedule and by `backup run`) once WAL archiving has been checked.
    archiver.WithEnvironment("Backup__Config", backupConfig).WaitForCompletion(infra.BackupSetup!);
}

// Alerts go to Alertmanager, which routes them to the archiver's webhook receiver (or to an SRE's pager).
var prometheus = infra.AddMonitoring(alertReceiver: archiver, api, archiver);

builder.AnnounceWhenReady(api.Resource, prometheus.Resource, (IResourceWithEndpoints)infra.CacheServer.Resource);

builder.Build().Run();
return 0;
