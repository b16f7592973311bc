using System.ComponentModel.DataAnnotations;

namespace TodoScale.Api.Caching;

/// <summary>The first-page cache in Redis (section <c>Cache</c>).</summary>
public sealed class CacheOptions
{
    public const string Section = "Cache";

    public bool Enabled { get; set; } = true;

    /// <summary>A cached page lives at most this long, even if no write of its user ever invalidates it.</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan PageTtl { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How many users' unrecorded writes (Redis was unreachable) this process remembers to replay.</summary>
    [Range(1, 10_000_000)]
    public int MaxPendingUsers { get; set; } = 100_000;
}
