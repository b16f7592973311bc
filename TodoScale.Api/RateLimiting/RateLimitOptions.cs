using System.ComponentModel.DataAnnotations;

namespace TodoScale.Api.RateLimiting;

/// <summary>Each user's request budget (section <c>RateLimit</c>): a token bucket per user, so one user's flood never spends another's.</summary>
public sealed class RateLimitOptions
{
    public const string Section = "RateLimit";

    public bool Enabled { get; set; } = true;

    /// <summary>Requests a user may send at once after a quiet spell (the bucket's size).</summary>
    [Range(1, 1_000_000, ErrorMessage = "RateLimit:Burst must be from 1 to 1,000,000.")]
    public int Burst { get; set; } = 100;

    /// <summary>Requests a user may send per second, sustained (the bucket refills this many each second).</summary>
    [Range(1, 1_000_000, ErrorMessage = "RateLimit:PerSecond must be from 1 to 1,000,000.")]
    public int PerSecond { get; set; } = 50;
}
