using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using StackExchange.Redis;
using TodoScale.Api.Caching;
using TodoScale.Api.Errors;
using TodoScale.Api.Reads;
using TodoScale.Api.Telemetry;
using TodoScale.Api.Writes;
using TodoScale.Data;
using TodoScale.Data.Tenancy;

namespace TodoScale.Api.Extensions;

/// <summary>Database settings of the API (section <c>Database</c>).</summary>
public sealed class DatabaseOptions
{
    public const string Section = "Database";

    /// <summary>
    /// The role every API connection acts as (SET ROLE at connect, through the connection's options): a role with
    /// NOBYPASSRLS, so row-level security holds even when the login role is the owner. Empty: the login role as is
    /// (for a login that is itself todoscale_app or a member role without BYPASSRLS).
    /// </summary>
    public string Role { get; set; } = "todoscale_app";

    /// <summary>
    /// Statements Npgsql prepares per connection after 5 uses (Max Auto Prepare), unless the connection string sets
    /// it: the page query then parses once per connection and runs its generic plan. 0 turns it off.
    /// </summary>
    public int MaxAutoPrepare { get; set; } = 32;

    /// <summary>The data source settings every API connection gets: the role, and auto-prepare.</summary>
    public NpgsqlDataSourceBuilder Apply(NpgsqlDataSourceBuilder builder)
    {
        if (MaxAutoPrepare < 0)
        {
            throw new InvalidOperationException($"Database:MaxAutoPrepare must be 0 (off) or more; it is {MaxAutoPrepare}.");
        }

        if (builder.ConnectionStringBuilder.MaxAutoPrepare == 0)
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = MaxAutoPrepare;
        }

        return builder.ActAs(Role);
    }
}

internal static class Extensions
{
    /// <summary>The API's own services: data sources and contexts, read routing, the Redis state, errors, JSON, OpenAPI.</summary>
    public static void AddApplicationServices(this IHostApplicationBuilder builder)
    {
        var database = builder.Configuration.GetSection(DatabaseOptions.Section).Get<DatabaseOptions>() ?? new DatabaseOptions();

        // The primary takes every write; its health check is the API's readiness.
        builder.AddNpgsqlDataSource(ConnectionNames.Todos, configureDataSourceBuilder: b => database.Apply(b));

        // The replica and Redis are optional for correctness (reads fall back to the primary, the cache to the
        // database): their outage makes the API Degraded, not Unhealthy.
        builder.AddKeyedNpgsqlDataSource(
            ConnectionNames.TodosReplica, settings => settings.DisableHealthChecks = true, b => database.Apply(b));
        builder.AddRedisClient(ConnectionNames.Cache, settings => settings.DisableHealthChecks = true, options =>
        {
            // Fail fast while Redis is away instead of queueing commands behind a reconnect: requests go on without it.
            options.AbortOnConnectFail = false;
            options.BacklogPolicy = BacklogPolicy.FailFast;
            options.ConnectTimeout = 1000;
            options.AsyncTimeout = 1000;
            options.SyncTimeout = 1000;
            options.ReconnectRetryPolicy = new LinearRetry(500);
        });

        builder.Services.AddPooledDbContextFactory<TodoDbContext>((sp, options) => options.UseTodoScale(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddPooledDbContextFactory<ReplicaDbContext>((sp, options) =>
            options.UseTodoScaleReplica(sp.GetRequiredKeyedService<NpgsqlDataSource>(ConnectionNames.TodosReplica)));

        builder.Services.AddOptions<ReadOptions>().BindConfiguration(ReadOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<CacheOptions>().BindConfiguration(CacheOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ApiMetrics>();
        builder.Services.AddSingleton<DatabaseMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DatabaseMonitor>());
        builder.Services.AddSingleton<UserStateStore>();
        builder.Services.AddSingleton<ReadRouter>();
        builder.Services.AddSingleton<TenantWrites>();

        builder.Services.AddHealthChecks()
            .AddCheck<ReplicaHealthCheck>("replica", HealthStatus.Degraded)
            .AddCheck<CacheHealthCheck>("cache", HealthStatus.Degraded);

        // Bad input is the caller's error: unknown fields and unbindable parameters become 400s that name the field.
        builder.Services.ConfigureHttpJsonOptions(options =>
        {
            options.SerializerOptions.UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow;
            options.SerializerOptions.DefaultIgnoreCondition = JsonIgnoreCondition.Never;
        });
        builder.Services.Configure<RouteHandlerOptions>(options => options.ThrowOnBadRequest = true);
        builder.Services.AddExceptionHandler<ApiExceptionHandler>();

        builder.Services.AddOpenApi(options => options
            .AddDocumentTransformer<BearerSecurityTransformer>()
            .AddSchemaTransformer<OptionalSchemaTransformer>());
    }

}

/// <summary>The replica is up and close enough to serve reads; otherwise Degraded (reads go to the primary).</summary>
internal sealed class ReplicaHealthCheck(DatabaseMonitor monitor, Microsoft.Extensions.Options.IOptions<ReadOptions> options) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var replica = monitor.Replica;
        return Task.FromResult(replica switch
        {
            { Up: false } => new HealthCheckResult(context.Registration.FailureStatus, $"replica down, reads go to the primary: {replica.Error}"),
            _ when replica.Lag > options.Value.ReplicaLagLimit =>
                new HealthCheckResult(context.Registration.FailureStatus, $"replica {replica.Lag.TotalSeconds:0.###} s behind, reads go to the primary"),
            _ => HealthCheckResult.Healthy($"replica {replica.Lag.TotalMilliseconds:0} ms behind"),
        });
    }
}

/// <summary>Redis answers; otherwise Degraded (no cache, reads go to the primary).</summary>
internal sealed class CacheHealthCheck(IConnectionMultiplexer redis, UserStateStore userState) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(redis.IsConnected
            ? HealthCheckResult.Healthy(userState.PendingUsers == 0 ? "connected" : $"connected, {userState.PendingUsers} users' writes to replay")
            : new HealthCheckResult(context.Registration.FailureStatus, "Redis unreachable: no cache, reads go to the primary"));
}
