using TodoScale.AppHost.Infra;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// On a test class: its tests need a container engine that answers and the images container mode pins (pulled, or
/// built by `./build.sh test` from images/ where no registry answers). Where either is missing, every
/// <see cref="EngineFactAttribute"/> test of the class is reported as skipped with the reason, never passed.
/// </summary>
[AttributeUsage(AttributeTargets.Class)]
public sealed class NeedsContainerEngineAttribute : Attribute
{
    /// <summary>The class runs the stack on Citus (--Infra:Database=citus): the citusdata/citus image is needed too.</summary>
    public bool Citus { get; init; }
}

/// <summary>The container engine the container-mode tests drive: the one Aspire's DCP would.</summary>
public static class ContainerEngine
{
    /// <summary>docker or podman: ASPIRE_CONTAINER_RUNTIME, else docker when it answers, else podman when it does.</summary>
    public static string Runtime { get; } =
        Environment.GetEnvironmentVariable("ASPIRE_CONTAINER_RUNTIME") is { Length: > 0 } runtime ? runtime
        : InfraOptions.EngineAnswers("docker") ? "docker"
        : "podman";

    /// <summary>The images the AppHost pins (Grafana aside: see <see cref="HasGrafana"/>).</summary>
    public static IReadOnlyList<string> Images { get; } =
    [
        $"docker.io/library/postgres:{ContainerInfrastructure.PostgresImageTag}",
        $"docker.io/library/redis:{ContainerInfrastructure.RedisImageTag}",
        $"docker.io/{ContainerInfrastructure.PrometheusImage}:{ContainerInfrastructure.PrometheusImageTag}",
        $"quay.io/{ContainerInfrastructure.AlertmanagerImage}:{ContainerInfrastructure.AlertmanagerImageTag}",
        $"quay.io/{ContainerInfrastructure.PostgresExporterImage}:{ContainerInfrastructure.PostgresExporterImageTag}",
    ];

    public static string? MissingReason { get; } = FindMissingReason();

    /// <summary>Why container mode on Citus cannot run here, or null: the engine, the images and citusdata/citus.</summary>
    public static string? CitusMissingReason { get; } = MissingReason
        ?? (ImageExists(CitusImage) ? null : $"{Runtime} has not got {CitusImage} (./build.sh test builds it from images/ where no registry answers)");

    public static string CitusImage => $"docker.io/{ContainerInfrastructure.CitusImage}:{ContainerInfrastructure.CitusImageTag}";

    /// <summary>Whether Grafana's image is here (it cannot be built from Debian's packages: images/README.md).</summary>
    public static bool HasGrafana => MissingReason is null && ImageExists($"docker.io/{ContainerInfrastructure.GrafanaImage}:{ContainerInfrastructure.GrafanaImageTag}");

    private static string? FindMissingReason()
    {
        if (!InfraOptions.EngineAnswers(Runtime))
        {
            return $"no container engine answers ({Runtime} version --format {{{{.Server.Version}}}} failed): ./build.sh test installs Podman on Debian as root";
        }

        var missing = Images.Where(image => !ImageExists(image)).ToList();
        return missing.Count == 0 ? null : $"{Runtime} has not got {string.Join(", ", missing)} (./build.sh test builds them from images/ where no registry answers)";
    }

    private static bool ImageExists(string image) => Run("image", "inspect", image).Exit == 0;

    /// <summary>Runs the engine's CLI, bounded (a timeout is an exit of -1 with the reason, for the skip reasons).</summary>
    public static (int Exit, string Output) Run(params string[] args)
    {
        try
        {
            return ProcessRunner.RunAsync(ProcessRunner.StartInfo(Runtime, args), TimeSpan.FromMinutes(2)).GetAwaiter().GetResult();
        }
        catch (TimeoutException e)
        {
            return (-1, e.Message);
        }
    }

    /// <summary>Removes the volumes container mode made for the stack on <paramref name="dataRoot"/> (todoscale-&lt;stack id&gt;-*).</summary>
    public static void RemoveVolumes(string dataRoot)
    {
        var prefix = $"todoscale-{TodoScale.AppHost.Infra.ContainerInfrastructure.StackId(dataRoot)}-";
        var (_, volumes) = Run("volume", "ls", "--format", "{{.Name}}");
        foreach (var volume in volumes.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(v => v.StartsWith(prefix, StringComparison.Ordinal)))
        {
            Run("volume", "rm", "--force", volume);
        }
    }
}
