using Npgsql;
using Spectre.Console;
using TodoScale.Archiver.ColdStorage;
using TodoScale.Archiver.Database;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// How the maintenance verbs end: a usage error prints its message and exits with its code (2), a failure of
/// the database, the files or a cold-storage check prints what failed and exits 1. Never a stack trace.
/// </summary>
internal static class VerbRunner
{
    public static async Task<int> RunAsync(string verb, Func<Task<int>> body)
    {
        try
        {
            return await body();
        }
        catch (CliException ex)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]{verb}: {ex.Message}[/]");
            return ex.ExitCode;
        }
        catch (Exception ex) when (ex is ColdStorageException or Backups.BackupException or NpgsqlException or TimeoutException or IOException or InvalidDataException)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]{verb} failed: {Failures.Describe(ex)}[/]");
            return ExitCodes.Failure;
        }
    }
}
