using Microsoft.Net.Http.Headers;
using TodoScale.Api.Errors;

namespace TodoScale.Api.Apis;

/// <summary>
/// Optimistic concurrency: a resource's ETag is its updated_at (set by the database on every change, to the
/// microsecond); a write with If-Match that no longer matches gets 412 Precondition Failed.
/// </summary>
public static class ETags
{
    public static string For(DateTimeOffset updatedAt) => $"\"{updatedAt.UtcTicks:x}\"";

    /// <summary>True when the request has no If-Match, If-Match: *, or an If-Match naming the current version.</summary>
    public static bool Matches(HttpRequest request, DateTimeOffset updatedAt)
    {
        var header = request.Headers.IfMatch;
        if (header.Count == 0)
        {
            return true;
        }

        if (!EntityTagHeaderValue.TryParseList(header, out var tags))
        {
            return false;
        }

        var current = For(updatedAt);
        return tags.Any(tag => tag.Equals(EntityTagHeaderValue.Any) || (!tag.IsWeak && tag.Tag.Equals(current, StringComparison.Ordinal)));
    }

    public static void Set(HttpResponse response, DateTimeOffset updatedAt) => response.Headers.ETag = For(updatedAt);

    /// <summary>The 412 for a write whose If-Match no longer names the current version of <paramref name="what"/>.</summary>
    public static PreconditionFailedProblem PreconditionFailed(string what) =>
        new($"The {what} changed since the ETag in If-Match was issued; read it again and retry.");
}
