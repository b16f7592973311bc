using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using TodoScale.Api.Telemetry;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Api.RateLimiting;

/// <summary>
/// Per-user rate limiting with ASP.NET Core's rate limiter: one token bucket per user (the token's `sub`; before a
/// token is known, per client address), over /api only (health, metrics and the OpenAPI document are not limited).
/// A request over budget is refused at once (no queue) with a 429 ProblemDetails and Retry-After, and counted.
/// </summary>
public static class RateLimiting
{
    public static IHostApplicationBuilder AddTodoScaleRateLimiting(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<RateLimitOptions>().BindConfiguration(RateLimitOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddRateLimiter(_ => { });
        builder.Services.AddOptions<RateLimiterOptions>().Configure<IOptions<RateLimitOptions>>((limiter, settings) =>
        {
            var limits = settings.Value;
            limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
            limiter.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, string>(context =>
                !limits.Enabled || !context.Request.Path.StartsWithSegments("/api")
                    ? RateLimitPartition.GetNoLimiter("unlimited")
                    : RateLimitPartition.GetTokenBucketLimiter(PartitionOf(context), _ => new TokenBucketRateLimiterOptions
                    {
                        TokenLimit = limits.Burst,
                        TokensPerPeriod = limits.PerSecond,
                        ReplenishmentPeriod = TimeSpan.FromSeconds(1),
                        QueueLimit = 0,
                        AutoReplenishment = true,
                    }));
            limiter.OnRejected = (rejected, cancellationToken) => RejectAsync(rejected, limits, cancellationToken);
        });
        return builder;
    }

    /// <summary>The user of a valid token, or (no token yet, or not a valid one) the client's address.</summary>
    private static string PartitionOf(HttpContext context) =>
        context.User.UserId() is { } user ? "user:" + user.ToString("N") : "address:" + context.Connection.RemoteIpAddress;

    private static async ValueTask RejectAsync(OnRejectedContext rejected, RateLimitOptions limits, CancellationToken cancellationToken)
    {
        var context = rejected.HttpContext;
        var retryAfter = rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var wait) ? Math.Max(1, (int)Math.Ceiling(wait.TotalSeconds)) : 1;
        context.Response.Headers.RetryAfter = retryAfter.ToString(CultureInfo.InvariantCulture);
        context.RequestServices.GetRequiredService<ApiMetrics>().RequestRateLimited();
        await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
        {
            HttpContext = context,
            ProblemDetails = new ProblemDetails
            {
                Status = StatusCodes.Status429TooManyRequests,
                Title = "Too Many Requests",
                Detail = $"More than {limits.PerSecond} requests per second (bursts of {limits.Burst}) from this user; retry after {retryAfter} s.",
            },
        });
    }
}
