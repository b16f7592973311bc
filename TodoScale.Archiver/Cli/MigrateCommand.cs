using System.CommandLine;
using System.Diagnostics;
using Npgsql;
using Spectre.Console;
using TodoScale.Data;

namespace TodoScale.Archiver.Cli;

/// <summary>`migrate`: applies the schema. Idempotent; exits 0 when the database is current.</summary>
internal static class MigrateCommand
{
    public static Command Create()
    {
        var command = new Command("migrate", "Apply the schema migrations; exit 0 when the database is current.");
        command.SetAction((_, _) => Task.FromResult(Run()));
        return command;
    }

    private static int Run()
    {
        try
        {
            var connectionString = CliConfiguration.Load().RequirePrimaryConnectionString();
            var target = new NpgsqlConnectionStringBuilder(connectionString);
            AnsiConsole.MarkupLineInterpolated($"[grey]migrate:[/] database [bold]{target.Database}[/] on {target.Host}:{target.Port}");

            var stopwatch = Stopwatch.StartNew();
            var result = new SchemaMigrator(connectionString, message => AnsiConsole.MarkupLineInterpolated($"[grey]  {message}[/]")).Migrate();

            foreach (var name in result.Names)
            {
                AnsiConsole.MarkupLineInterpolated($"  applied [green]{name}[/]");
            }

            AnsiConsole.MarkupLineInterpolated(
                $"migrate: database current, {result.Applied} migration(s) applied in {stopwatch.ElapsedMilliseconds} ms");
            return ExitCodes.Success;
        }
        catch (CliException ex)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]migrate: {ex.Message}[/]");
            return ex.ExitCode;
        }
        catch (Exception ex) when (ex is NpgsqlException or EvolveDb.EvolveException or ArgumentException)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]migrate failed: {ex.Message}[/]");
            if (ex.InnerException is { } inner)
            {
                AnsiConsole.MarkupLineInterpolated($"[red]  {inner.Message}[/]");
            }

            return ExitCodes.Failure;
        }
    }
}
