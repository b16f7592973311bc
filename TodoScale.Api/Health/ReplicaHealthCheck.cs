using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Options;
using TodoScale.Api.Reads;

namespace TodoScale.Api.Health;

/// <summary>The replica is up and close enough to serve reads; otherwise Degraded (reads go to the primary).</summary>
internal sealed class ReplicaHealthCheck(DatabaseMonitor monitor, IOptions<ReadOptions> options) : IHealthCheck
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
