using System.Security.Claims;
using Microsoft.AspNetCore.Http.HttpResults;
using TodoScale.Api.Extensions;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Api.Apis;

/// <summary>Who the bearer token says the caller is: lets a client (or a developer with curl) check a token.</summary>
public static class IdentityApi
{
    public static IEndpointRouteBuilder MapIdentityApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").WithTags("Identity").RequireAuthorization(Policies.User);
        api.MapGet("/me", GetMe).WithName(nameof(GetMe));
        return app;
    }

    /// <summary>Who the token says you are</summary>
    /// <remarks>
    /// The user the bearer token names (its `sub`) and whether it carries the `admin` scope that the operator
    /// operations need. A quick way to check a token; it touches no database.
    /// </remarks>
    /// <response code="200">Your user id and whether the token has the admin scope.</response>
    public static Ok<MeResponse> GetMe(ClaimsPrincipal user) =>
        TypedResults.Ok(new MeResponse(user.UserId()!.Value, user.IsAdmin()));
}

/// <summary>The caller, as the token says.</summary>
/// <param name="UserId">Your user id (the token's `sub`).</param>
/// <param name="Admin">Whether the token carries the `admin` scope.</param>
public sealed record MeResponse(Guid UserId, bool Admin);
