namespace TodoScale.Testing;

public static class RepositoryPaths
{
    /// <summary>The repository root: the folder holding TodoScale.sln above the test binaries.</summary>
    public static string Root { get; } = FindRoot();

    /// <summary>dashboards/: Prometheus rules and tests, Grafana provisioning, runbooks.</summary>
    public static string Dashboards => Path.Combine(Root, "dashboards");

    /// <summary>The build configuration the tests were built in (Debug or Release), to find sibling projects' output.</summary>
    public static string Configuration { get; } =
        new DirectoryInfo(AppContext.BaseDirectory).Parent?.Name is { } name && name is "Debug" or "Release" ? name : "Debug";

    public static string ProjectOutput(string project, string file) =>
        Path.Combine(Root, project, "bin", Configuration, "net10.0", file);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TodoScale.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"TodoScale.sln not found above {AppContext.BaseDirectory}");
    }
}
