using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace TodoScale.Api.Health;

/// <summary>
/// Unhealthy while the role the API's primary connections act as bypasses row-level security (a superuser, or a
/// role with BYPASSRLS): every tenant could then read every other's rows. That is what a login as the owner with
/// `Database:Role` emptied, or with `Database:Pooled` but not the pooler's todoscale_app login, would do.
/// </summary>
internal sealed class RowSecurityHealthCheck(NpgsqlDataSource primary) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            await using var connection = await primary.OpenConnectionAsync(cancellationToken);
            await using var command = new NpgsqlCommand("SELECT current_user::text, rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user", connection);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            await reader.ReadAsync(cancellationToken);
            var (role, bypasses) = (reader.GetString(0), reader.GetBoolean(1));
            return bypasses
                ? new HealthCheckResult(context.Registration.FailureStatus,
                    $"the API's connections act as {role}, which bypasses row-level security: set Database:Role to todoscale_app (or, through a pooler, log in as todoscale_app)")
                : HealthCheckResult.Healthy($"acting as {role}, row-level security applies");
        }
        catch (NpgsqlException ex)
        {
            return new HealthCheckResult(context.Registration.FailureStatus, $"could not read the API's role: {ex.Message}", ex);
        }
    }
}
