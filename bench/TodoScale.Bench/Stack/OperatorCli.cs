using System.Diagnostics;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Bench.Stack;

/// <summary>The operators' CLI (TodoScale.Archiver) run as a process against the stack's primary, as an operator runs it.</summary>
public static class OperatorCli
{
    /// <summary>Runs a verb and returns its summary line: the last one starting with <paramref name="prefix"/>.</summary>
    public static async Task<string> RunAsync(BenchStack stack, string[] args, string prefix, CancellationToken cancellationToken)
    {
        var info = new ProcessStartInfo("dotnet", [RepositoryPaths.ProjectOutput("TodoScale.Archiver", "TodoScale.Archiver.dll"), .. args])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["ConnectionStrings__todos"] = stack.PrimaryConnectionString;
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the archiver CLI");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var line = (await output).Split('\n').LastOrDefault(l => l.StartsWith(prefix, StringComparison.Ordinal));
        return process.ExitCode == 0 && line is not null
            ? line.Trim()
            : throw new InvalidOperationException($"{string.Join(' ', args)} exited {process.ExitCode}: {await output}{await error}");
    }
}
