using System.Security.Claims;
using TodoScale.Api.Reads;
using TodoScale.Api.Writes;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Api.Apis;

/// <summary>
/// What a handler acting for the signed-in user needs (todos, subtasks, projects, AI), bound with [AsParameters]:
/// the caller, the read router and the write transactions, the database facts, the clock, the HTTP context.
/// </summary>
public sealed record UserHandlerContext(
    TenantWrites Writes,
    ReadRouter Reads,
    DatabaseMonitor Database,
    TimeProvider Clock,
    HttpContext Http,
    ClaimsPrincipal User)
{
    public const string ReadSourceHeader = "X-TodoScale-Read";

    /// <summary>The caller (the policy on every group guarantees a uuid sub).</summary>
    public Guid UserId => User.UserId()!.Value;

    public T Served<T>(Routed<T> routed)
    {
        Http.Response.Headers[ReadSourceHeader] = routed.Source;
        return routed.Value;
    }
}
