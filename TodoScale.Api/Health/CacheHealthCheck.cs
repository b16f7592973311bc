using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;
using TodoScale.Api.Caching;

namespace TodoScale.Api.Health;

/// <summary>Redis answers; otherwise Degraded (no cache, reads go to the primary).</summary>
internal sealed class CacheHealthCheck(IConnectionMultiplexer redis, UserStateStore userState) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default) =>
        Task.FromResult(redis.IsConnected
            ? HealthCheckResult.Healthy(userState.PendingUsers == 0 ? "connected" : $"connected, {userState.PendingUsers} users' writes to replay")
            : new HealthCheckResult(context.Registration.FailureStatus, "Redis unreachable: no cache, reads go to the primary"));
}
