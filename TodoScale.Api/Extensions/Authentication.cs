using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.Extensions.Options;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Api.Extensions;

/// <summary>The authorization policies of the API's endpoints.</summary>
public static class Policies
{
    /// <summary>A valid bearer token whose `sub` is a uuid: the user every todo query is scoped to.</summary>
    public const string User = "user";

    /// <summary>A user token with the `admin` scope: the operator endpoints.</summary>
    public const string Admin = "admin";
}

internal static class Authentication
{
    /// <summary>JWT bearer authentication with TodoScale's tokens; a missing or unusable signing key stops the API at start.</summary>
    public static void AddTodoScaleAuthentication(this IHostApplicationBuilder builder)
    {
        builder.Services.AddOptions<AuthOptions>()
            .BindConfiguration(AuthOptions.SectionName)
            .ValidateDataAnnotations()
            .ValidateOnStart();

        builder.Services.AddAuthentication(JwtBearerDefaults.AuthenticationScheme).AddJwtBearer();
        builder.Services.AddOptions<JwtBearerOptions>(JwtBearerDefaults.AuthenticationScheme)
            .Configure<IOptions<AuthOptions>>((jwt, auth) =>
            {
                jwt.MapInboundClaims = false; // keep `sub` and `scope` as they are in the token
                jwt.TokenValidationParameters = TodoScaleTokens.ValidationParameters(auth.Value);
            });

        builder.Services.AddAuthorizationBuilder()
            .AddPolicy(Policies.User, policy => policy.RequireAuthenticatedUser().RequireAssertion(c => c.User.UserId() is not null))
            .AddPolicy(Policies.Admin, policy => policy.RequireAuthenticatedUser().RequireAssertion(c => c.User.UserId() is not null && c.User.IsAdmin()));
    }
}
