using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TodoScale.Testing;

/// <summary>Runs programs for the fixtures, as the postgres user when the tests run as root (postgres refuses root).</summary>
public static partial class ProcessRunner
{
    public static bool IsRoot => Environment.UserName == "root" || geteuid() == 0;

    /// <param name="environment">
    /// Variables for the program itself. When it runs as postgres they are given to it by env(1) after setpriv, so a
    /// preloaded library (libfaketime) loads in the program only, not in setpriv running as root.
    /// </param>
    public static ProcessStartInfo StartInfo(string program, IEnumerable<string> args, bool asPostgres = false, IReadOnlyList<(string Name, string Value)>? environment = null)
    {
        environment ??= [];
        var info = asPostgres && IsRoot
            ? new ProcessStartInfo("setpriv",
                ["--reuid=postgres", "--regid=postgres", "--init-groups", "env", .. environment.Select(e => $"{e.Name}={e.Value}"), program, .. args])
            : new ProcessStartInfo(program, args);
        if (!(asPostgres && IsRoot))
        {
            foreach (var (name, value) in environment)
            {
                info.Environment[name] = value;
            }
        }

        info.RedirectStandardOutput = true;
        info.RedirectStandardError = true;
        info.UseShellExecute = false;
        return info;
    }

    /// <summary>Runs a program to completion and returns its exit code and output; throws on timeout.</summary>
    public static async Task<(int ExitCode, string Output)> RunAsync(ProcessStartInfo info, TimeSpan timeout)
    {
        var (exitCode, output, errors) = await RunApartAsync(info, timeout);
        return (exitCode, output + errors);
    }

    /// <summary><see cref="RunAsync"/> with standard output and standard error apart: for a program whose result is one and its noise the other.</summary>
    public static async Task<(int ExitCode, string Output, string Errors)> RunApartAsync(ProcessStartInfo info, TimeSpan timeout)
    {
        using var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {info.FileName}");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{info.FileName} {string.Join(' ', info.ArgumentList)} did not finish within {timeout}");
        }

        return (process.ExitCode, await stdout, await stderr);
    }

    public static async Task RunCheckedAsync(ProcessStartInfo info, TimeSpan timeout)
    {
        var (exitCode, output) = await RunAsync(info, timeout);
        if (exitCode != 0)
        {
            throw new InvalidOperationException($"{info.FileName} {string.Join(' ', info.ArgumentList)} exited {exitCode}: {output}");
        }
    }

    /// <summary>Sends a signal (SIGINT = 2: PostgreSQL's fast shutdown); .NET's Process.Kill only sends SIGKILL.</summary>
    public static void Signal(int pid, int signal) => _ = kill(pid, signal);

    public static void MakeTraversable(string directory)
    {
        if (OperatingSystem.IsWindows())
        {
            return;
        }

        File.SetUnixFileMode(directory, File.GetUnixFileMode(directory)
            | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherExecute);
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int sig);

    [LibraryImport("libc")]
    private static partial uint geteuid();
}
