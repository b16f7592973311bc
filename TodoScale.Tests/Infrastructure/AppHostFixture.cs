using Aspire.Hosting;
using Aspire.Hosting.Testing;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>One started AppHost shared by every test in the collection (a start costs about 10 s).</summary>
public class AppHostFixture : IAsyncLifetime
{
    /// <summary>AppHost arguments beyond the test settings (the Citus stack's engine).</summary>
    protected virtual IEnumerable<string> Args => [];

    public DistributedApplication App { get; private set; } = null!;

    public string DataRoot { get; } = TestApp.NewDataRoot();

    /// <summary>Whether the stack runs in container mode (Prometheus, Alertmanager and the servers in containers).</summary>
    public virtual bool ContainerMode => false;

    public virtual async Task InitializeAsync() => App = await TestApp.StartAsync(DataRoot, Args);

    /// <summary>A connection to the stack's Redis (`cache`) that may run admin commands (INFO, CONFIG); the caller disposes it.</summary>
    public async Task<StackExchange.Redis.ConnectionMultiplexer> CacheAdminAsync() =>
        await StackExchange.Redis.ConnectionMultiplexer.ConnectAsync($"{await App.GetConnectionStringAsync("cache")},allowAdmin=true");

    public virtual async Task DisposeAsync()
    {
        if (App is not null)
        {
            await App.DisposeAsync();
        }

        Directory.Delete(DataRoot, recursive: true);
    }
}

[CollectionDefinition(Name)]
public sealed class AppHostCollection : ICollectionFixture<AppHostFixture>
{
    public const string Name = "apphost";
}

/// <summary>
/// The whole stack with PgBouncer between the API and the primary (--Infra:Pooler=pgbouncer), two server connections
/// for every API connection, so the API's transactions share them all the time.
/// </summary>
public sealed class PooledAppHostFixture : AppHostFixture
{
    public const int PoolSize = 2;

    protected override IEnumerable<string> Args => ["--Infra:Pooler=pgbouncer", $"--Infra:PoolerPoolSize={PoolSize}"];
}

[CollectionDefinition(Name)]
public sealed class PooledAppHostCollection : ICollectionFixture<PooledAppHostFixture>
{
    public const string Name = "apphost-pooled";
}

/// <summary>The whole stack on a Citus cluster (--Infra:Database=citus): a coordinator, its standby and 2 workers.</summary>
public sealed class CitusAppHostFixture : AppHostFixture
{
    protected override IEnumerable<string> Args => ["--Infra:Database=citus"];

    public override Task InitializeAsync() => CitusCluster.MissingReason is null ? base.InitializeAsync() : Task.CompletedTask;
}

[CollectionDefinition(Name)]
public sealed class CitusAppHostCollection : ICollectionFixture<CitusAppHostFixture>
{
    public const string Name = "apphost-citus";
}

/// <summary>
/// The whole stack in container mode (--Infra:Mode=container) under the engine that answers (Podman here, with the
/// images built from images/); its volumes (named after the data root) are removed afterwards.
/// </summary>
public sealed class ContainerAppHostFixture : AppHostFixture
{
    public override bool ContainerMode => true;

    protected override IEnumerable<string> Args =>
        ["--Infra:Mode=container", $"--Infra:Grafana={(ContainerEngine.HasGrafana ? "true" : "false")}", $"--ASPIRE_CONTAINER_RUNTIME={ContainerEngine.Runtime}"];

    public override Task InitializeAsync()
    {
        if (ContainerEngine.MissingReason is not null)
        {
            return Task.CompletedTask;
        }

        // The engine reaches DCP as configuration (the Args above), not through this process' environment, which
        // every other AppHost and program the tests start would inherit.
        return base.InitializeAsync();
    }

    public override async Task DisposeAsync()
    {
        await base.DisposeAsync();
        if (ContainerEngine.MissingReason is null)
        {
            ContainerEngine.RemoveVolumes(DataRoot);
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ContainerAppHostCollection : ICollectionFixture<ContainerAppHostFixture>
{
    public const string Name = "apphost-container";
}
