namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// The processes an AppHost started under one data root: every process whose command line or working folder
/// lies under it (postgres' children chdir into their data folder; redis-server and prometheus run in theirs).
/// </summary>
internal static class OwnedProcesses
{
    public sealed record Owned(int Pid, string CommandLine);

    public static IReadOnlyList<Owned> Under(string dataRoot)
    {
        var owned = new List<Owned>();
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(Path.GetFileName(dir), out var pid) || pid == Environment.ProcessId || !IsAlive(pid))
            {
                continue;
            }

            var commandLine = Read(() => File.ReadAllText(Path.Combine(dir, "cmdline")).Replace('\0', ' ').Trim());
            var workingDirectory = Read(() => new DirectoryInfo(Path.Combine(dir, "cwd")).LinkTarget ?? "");
            if (commandLine.Contains(dataRoot, StringComparison.Ordinal) || workingDirectory.StartsWith(dataRoot, StringComparison.Ordinal))
            {
                owned.Add(new Owned(pid, commandLine));
            }
        }

        return owned;
    }

    /// <summary>True while the process exists and is not a zombie waiting to be reaped.</summary>
    public static bool IsAlive(int pid)
    {
        var stat = Read(() => File.ReadAllText($"/proc/{pid}/stat"));
        if (stat.Length == 0)
        {
            return false;
        }

        // Format: pid (comm) state ...; comm may contain spaces and parentheses, so read after the last ')'.
        var state = stat[(stat.LastIndexOf(')') + 2)..].FirstOrDefault();
        return state is not 'Z' and not 'X';
    }

    private static string Read(Func<string> read)
    {
        try
        {
            return read();
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            return ""; // the process ended while we looked, or is not ours to inspect
        }
    }
}
