using System.Diagnostics;
using System.Text;

namespace TodoScale.Testing;

/// <summary>
/// The operators' CLI (TodoScale.Archiver's build output) run as a process, as an operator runs it: against the
/// connection string given and nothing else (no user secrets, no inherited ConnectionStrings__todos), with the
/// settings given as environment variables. Run to the end, or started to be watched and killed.
/// </summary>
public static class OperatorCli
{
    /// <summary>A hang guard for a verb run to its end, sized for a loaded 2-core machine.</summary>
    public static readonly TimeSpan Timeout = TimeSpan.FromMinutes(10);

    /// <summary>Runs a verb to its end: its exit code and its output and errors interleaved.</summary>
    public static Task<(int ExitCode, string Output)> RunAsync(string[] args, string? connectionString, params (string Name, string Value)[] settings) =>
        ProcessRunner.RunAsync(StartInfo(args, connectionString, settings), Timeout);

    /// <summary>Runs a verb that must succeed and returns its summary line: the last one starting with <paramref name="prefix"/>.</summary>
    public static async Task<string> SummaryAsync(
        string connectionString, string[] args, string prefix, CancellationToken cancellationToken, params (string Name, string Value)[] settings)
    {
        var info = StartInfo(args, connectionString, settings);
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the archiver CLI");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var line = (await output).Split('\n').LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return process.ExitCode == 0 && line is not null
            ? line.Trim()
            : throw new InvalidOperationException($"{string.Join(' ', args)} exited {process.ExitCode}: {await output}{await error}");
    }

    /// <summary>Starts a verb without waiting (to watch its progress and kill it), its output and errors collected into <paramref name="output"/>.</summary>
    public static Process Start(string[] args, string connectionString, StringBuilder output, params (string Name, string Value)[] settings)
    {
        var process = Process.Start(StartInfo(args, connectionString, settings))!;
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static ProcessStartInfo StartInfo(string[] args, string? connectionString, (string Name, string Value)[] settings)
    {
        var info = ProcessRunner.StartInfo("dotnet", [RepositoryPaths.ProjectOutput("TodoScale.Archiver", "TodoScale.Archiver.dll"), .. args]);
        info.Environment.Remove("ConnectionStrings__todos");
        info.Environment["DOTNET_ENVIRONMENT"] = "Production"; // no user secrets: only what the caller passes
        if (connectionString is not null)
        {
            info.Environment["ConnectionStrings__todos"] = connectionString;
        }

        foreach (var (name, value) in settings)
        {
            info.Environment[name] = value;
        }

        return info;
    }
}
