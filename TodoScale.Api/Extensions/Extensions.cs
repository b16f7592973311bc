using TodoScale.Data;

namespace TodoScale.Api.Extensions;

internal static class Extensions
{
    /// <summary>The API's own services: the primary and replica data sources and the Redis cache.</summary>
    public static void AddApplicationServices(this IHostApplicationBuilder builder)
    {
        // The primary takes every write; its health check is the API's readiness.
        builder.AddNpgsqlDataSource(ConnectionNames.Todos);

        // The replica and Redis are optional for correctness (reads fall back to the primary, the cache to the
        // database), so an outage of either must not mark the API unhealthy.
        builder.AddKeyedNpgsqlDataSource(ConnectionNames.TodosReplica, settings => settings.DisableHealthChecks = true);
        builder.AddRedisClient(ConnectionNames.Cache, settings => settings.DisableHealthChecks = true);
    }
}
