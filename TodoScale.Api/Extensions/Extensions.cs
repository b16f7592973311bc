using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using StackExchange.Redis;
using TodoScale.Api.Caching;
using TodoScale.Api.Errors;
using TodoScale.Api.Health;
using TodoScale.Api.OpenApi;
using TodoScale.Api.Reads;
using TodoScale.Api.Telemetry;
using TodoScale.Api.Writes;
using TodoScale.Data;

namespace TodoScale.Api.Extensions;

internal static class Extensions
{
    /// <summary>The API's own services: data sources and contexts, read routing, the Redis state, errors, JSON, OpenAPI.</summary>
    public static void AddApplicationServices(this IHostApplicationBuilder builder)
    {
        // Every options class is validated the same way, when the API starts: a bad setting stops it, naming the setting.
        builder.Services.AddOptions<DatabaseOptions>().BindConfiguration(DatabaseOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<ReadOptions>().BindConfiguration(ReadOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddOptions<CacheOptions>().BindConfiguration(CacheOptions.Section).ValidateDataAnnotations().ValidateOnStart();

        // The data source callbacks get no service provider, so they bind the section themselves; ValidateOnStart above
        // still stops the API on a bad value before any connection opens.
        var database = builder.Configuration.GetSection(DatabaseOptions.Section).Get<DatabaseOptions>() ?? new DatabaseOptions();

        // The primary takes every write (directly, or through PgBouncer: Database:Pooled); its health check is the
        // API's readiness.
        builder.AddNpgsqlDataSource(ConnectionNames.Todos, configureDataSourceBuilder: b => database.Apply(b, database.Pooled));

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

        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ApiMetrics>();
        builder.Services.AddSingleton<DatabaseMonitor>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<DatabaseMonitor>());
        builder.Services.AddHttpContextAccessor(); // the client's session position (ClientSession) in the read router and writes
        builder.Services.AddSingleton<UserStateStore>();
        builder.Services.AddSingleton<ReadRouter>();
        builder.Services.AddSingleton<TenantWrites>();

        builder.Services.AddHealthChecks()
            .AddCheck<RowSecurityHealthCheck>("row-security")
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

        // Summaries, descriptions and parameter texts come from the handlers' XML comments (the OpenAPI source
        // generator); statuses from their typed results; the rest from the transformers in OpenApi/.
        builder.Services.AddOpenApi(options => options
            .AddDocumentTransformer<DocumentInfoTransformer>()
            .AddOperationTransformer<OperationConventions>()
            .AddOperationTransformer<OperationExamples>()
            .AddSchemaTransformer<OptionalSchemaTransformer>());
    }
}
