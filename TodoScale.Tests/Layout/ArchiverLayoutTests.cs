using System.Text.RegularExpressions;
using TodoScale.Testing;

namespace TodoScale.Tests.Layout;

/// <summary>
/// The archiver's folders keep their promise: its features (Alerts, Archiving, Backups, ColdStorage, Partitions, Legacy, Maintenance)
/// depend on none of each other, only on the shared home (Database, Settings, Telemetry); the shared home depends on
/// no feature; only Worker and Cli compose them. Read from the source as a newcomer would read it.
/// </summary>
public sealed partial class ArchiverLayoutTests
{
    private static readonly string[] Features = ["Alerts", "Archiving", "Backups", "ColdStorage", "Partitions", "Legacy", "Maintenance"];
    private static readonly string[] Shared = ["Database", "Settings", "Telemetry"];

    public static TheoryData<string> Folders => [.. Features, .. Shared];

    [Theory]
    [MemberData(nameof(Folders))]
    public void A_feature_or_shared_folder_uses_only_the_shared_home(string folder)
    {
        var used = UsedFolders(folder);
        Assert.NotEmpty(Directory.GetFiles(Path.Combine(RepositoryPaths.Root, "TodoScale.Archiver", folder), "*.cs"));
        Assert.Equal([], used.Where(u => u != folder && !Shared.Contains(u)).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void Every_folder_of_the_archiver_is_known_here()
    {
        var folders = Directory.GetDirectories(Path.Combine(RepositoryPaths.Root, "TodoScale.Archiver"))
            .Select(f => Path.GetFileName(f)!).Where(f => f is not ("bin" or "obj" or "Properties")).Order(StringComparer.Ordinal);
        Assert.Equal(Features.Concat(Shared).Append("Cli").Append("Worker").Order(StringComparer.Ordinal), folders);
    }

    /// <summary>The archiver folders a folder's code names, by using directive or qualified name.</summary>
    private static HashSet<string> UsedFolders(string folder) =>
        [.. Directory.GetFiles(Path.Combine(RepositoryPaths.Root, "TodoScale.Archiver", folder), "*.cs", SearchOption.AllDirectories)
            .SelectMany(file => Reference().Matches(File.ReadAllText(file)).Select(m => m.Groups[1].Value))];

    [GeneratedRegex(@"TodoScale\.Archiver\.([A-Za-z]+)")]
    private static partial Regex Reference();
}
