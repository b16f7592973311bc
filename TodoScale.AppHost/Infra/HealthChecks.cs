using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;
using StackExchange.Redis;

namespace TodoScale.AppHost.Infra;

/// <summary>
/// Health checks that make WaitFor mean "accepting connections": each resolves the resource's connection string
/// when it runs (the port is allocated by then) and opens a real connection.
/// </summary>
internal static class HealthChecks
{
    public static IResourceBuilder<T> WithPostgresHealthCheck<T>(this IResourceBuilder<T> resource)
        where T : IResourceWithConnectionString =>
        resource.WithHealthCheck(resource.ApplicationBuilder, new PostgresHealthCheck(resource.Resource));

    public static IResourceBuilder<T> WithRedisHealthCheck<T>(this IResourceBuilder<T> resource)
        where T : IResourceWithConnectionString =>
        resource.WithHealthCheck(resource.ApplicationBuilder, new RedisHealthCheck(resource.Resource));

    /// <summary>Healthy when the coordinator behind <paramref name="coordinator"/> lists <paramref name="workers"/> active workers and itself.</summary>
    public static IResourceBuilder<T> WithCitusClusterHealthCheck<T>(this IResourceBuilder<T> resource, IResourceWithConnectionString coordinator, int workers)
        where T : IResource =>
        resource.WithHealthCheck(resource.ApplicationBuilder, new PostgresHealthCheck(coordinator,
            $"SELECT count(*) FILTER (WHERE groupid > 0 AND isactive) >= {workers} AND bool_or(groupid = 0) FROM pg_dist_node",
            $"the coordinator does not list its {workers} worker(s) yet"));

    private static IResourceBuilder<T> WithHealthCheck<T>(this IResourceBuilder<T> resource, IDistributedApplicationBuilder builder, IHealthCheck check)
        where T : IResource
    {
        var key = $"{resource.Resource.Name}_connect";
        builder.Services.AddHealthChecks().Add(new HealthCheckRegistration(key, _ => check, failureStatus: null, tags: null));
        return resource.WithHealthCheck(key);
    }

    /// <summary>Connects and runs <paramref name="probe"/>; healthy when it returns true (<c>SELECT 1</c>: connecting is enough).</summary>
    private sealed class PostgresHealthCheck(IResourceWithConnectionString resource, string probe = "SELECT true", string? notYet = null) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var connectionString = new NpgsqlConnectionStringBuilder(await resource.GetConnectionStringAsync(cancellationToken))
                {
                    Pooling = false, // an idle pooled connection would only delay the server's shutdown
                    Timeout = 3,
                }.ConnectionString;
                await using var connection = new NpgsqlConnection(connectionString);
                await connection.OpenAsync(cancellationToken);
                await using var command = new NpgsqlCommand(probe, connection);
                return await command.ExecuteScalarAsync(cancellationToken) is true
                    ? HealthCheckResult.Healthy()
                    : HealthCheckResult.Unhealthy($"{resource.Name}: {notYet}");
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
            {
                return HealthCheckResult.Unhealthy($"{resource.Name} is not accepting connections: {ex.Message}", ex);
            }
        }
    }

    private sealed class RedisHealthCheck(IResourceWithConnectionString resource) : IHealthCheck
    {
        public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
        {
            try
            {
                var options = ConfigurationOptions.Parse(await resource.GetConnectionStringAsync(cancellationToken) ?? "");
                options.AbortOnConnectFail = true;
                options.ConnectTimeout = 3000;
                await using var connection = await ConnectionMultiplexer.ConnectAsync(options);
                await connection.GetDatabase().PingAsync();
                return HealthCheckResult.Healthy();
            }
            catch (Exception ex) when (ex is RedisException or InvalidOperationException or TimeoutException or ArgumentException)
            {
                return HealthCheckResult.Unhealthy($"{resource.Name} does not answer PING: {ex.Message}", ex);
            }
        }
    }
}
