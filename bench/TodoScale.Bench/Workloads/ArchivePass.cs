using System.Diagnostics;
using System.Text.RegularExpressions;
using TodoScale.Testing;

namespace TodoScale.Bench.Workloads;

/// <summary>What one `archive --once` reported, as the operator sees it.</summary>
public sealed record ArchiveResult(long Rows, double Seconds, string SummaryLine)
{
    public double RowsPerSecond => Rows / Seconds;
}

/// <summary>
/// Workload 3: the real operators' CLI, `TodoScale.Archiver archive --once`, run as a process against the
/// primary, the way an operator runs it; its own summary line gives rows moved and the time.
/// </summary>
public static partial class ArchivePass
{
    /// <summary>One pass with the default settings, or with <paramref name="olderThan"/> (e.g. "45d") as the cut-off.</summary>
    public static async Task<ArchiveResult> RunAsync(string primaryConnectionString, string? olderThan, CancellationToken cancellationToken)
    {
        var archiver = RepositoryPaths.ProjectOutput("TodoScale.Archiver", "TodoScale.Archiver.dll");
        if (!File.Exists(archiver))
        {
            throw new InvalidOperationException($"{archiver} is missing: build the solution first (./build.sh bench does).");
        }

        var info = new ProcessStartInfo("dotnet", olderThan is null ? [archiver, "archive", "--once"] : [archiver, "archive", "--once", "--older-than", olderThan])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        info.Environment["ConnectionStrings__todos"] = primaryConnectionString;
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the archiver");
        var output = await process.StandardOutput.ReadToEndAsync(cancellationToken);
        var error = await process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var line = output.Split('\n').FirstOrDefault(l => l.StartsWith("archive: moved", StringComparison.Ordinal) && l.Contains("todos", StringComparison.Ordinal));
        if (process.ExitCode != 0 || line is null)
        {
            throw new InvalidOperationException($"archive --once exited {process.ExitCode}: {output}{error}");
        }

        var match = Summary().Match(line);
        var rows = long.Parse(match.Groups["rows"].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
        var seconds = double.Parse(match.Groups["seconds"].Value, System.Globalization.CultureInfo.InvariantCulture);
        return new ArchiveResult(rows, seconds, line.Trim());
    }

    [GeneratedRegex(@"moved (?<rows>[0-9,]+) todos .* in (?<seconds>[0-9.]+) s")]
    private static partial Regex Summary();
}
