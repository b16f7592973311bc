using System.Diagnostics;

namespace TodoScale.Testing;

/// <summary>
/// The built TodoScale.Api run as a process of its own (Production: no user secrets), given its servers, its
/// signing key and any settings as environment variables: what a test needs to start an API with settings the
/// shared stack's API does not have.
/// </summary>
public static class ApiProcess
{
    public static ProcessStartInfo StartInfo(
        string urls, string primary, string replica, string cache, string signingKey, params (string Name, string Value)[] settings)
    {
        var info = ProcessRunner.StartInfo("dotnet", [RepositoryPaths.ProjectOutput("TodoScale.Api", "TodoScale.Api.dll")]);
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_URLS"] = urls;
        info.Environment["ConnectionStrings__todos"] = primary;
        info.Environment["ConnectionStrings__todos-replica"] = replica;
        info.Environment["ConnectionStrings__cache"] = cache;
        info.Environment["Auth__SigningKey"] = signingKey;
        foreach (var (name, value) in settings)
        {
            info.Environment[name] = value;
        }

        return info;
    }
}
