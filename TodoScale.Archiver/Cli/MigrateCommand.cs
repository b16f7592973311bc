using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Npgsql;
using Spectre.Console;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `migrate`: applies the schema. Idempotent; exits 0 when the database is current, 1 when it could not be
/// brought current (unreachable server, an edited migration, a lock it could not take), 2 for bad settings.
/// </summary>
internal static class MigrateCommand
{
    public static Command Create()
    {
        var command = new Command("migrate", "Apply the schema migrations; exit 0 when the database is current.");
        command.SetAction((_, cancellationToken) => RunAsync(cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(CancellationToken cancellationToken)
    {
        try
        {
            var configuration = CliConfiguration.Load();
            var connectionString = configuration.RequirePrimaryConnectionString();
            var options = LoadOptions(configuration);
            var target = new NpgsqlConnectionStringBuilder(connectionString);
            AnsiConsole.MarkupLineInterpolated($"[grey]migrate:[/] database [bold]{target.Database}[/] on {target.Host}:{target.Port}");

            var result = await new SchemaMigrator(connectionString, options, message => AnsiConsole.MarkupLineInterpolated($"[grey]  {message}[/]")).MigrateAsync(cancellationToken);
            WarnWhenPartitionCountDiffers(connectionString, options);
            AnsiConsole.MarkupLineInterpolated(
                $"migrate: database current, {result.Applied} migration(s) applied in {result.ElapsedMilliseconds} ms{(result.Distributed.Count > 0 ? $", {result.Distributed.Count} table(s) placed on Citus" : "")}");
            return ExitCodes.Success;
        }
        catch (CliException ex)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]migrate: {ex.Message}[/]");
            return ex.ExitCode;
        }
        catch (SchemaLockException ex)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]migrate failed: {ex.Message}[/]");
            return ExitCodes.Failure;
        }
        catch (Exception ex) when (ex is NpgsqlException or EvolveDb.EvolveException or ArgumentException)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]migrate failed: {Describe(ex)}[/]");
            for (var inner = ex.InnerException; inner is not null; inner = inner.InnerException)
            {
                AnsiConsole.MarkupLineInterpolated($"[red]  {Describe(inner)}[/]");
            }

            return ExitCodes.Failure;
        }
    }

    internal static SchemaOptions LoadOptions(IConfiguration configuration)
    {
        var options = new SchemaOptions();
        try
        {
            configuration.GetSection(SchemaOptions.SectionName).Bind(options);
        }
        catch (InvalidOperationException ex)
        {
            throw new CliException($"bad {SchemaOptions.SectionName} setting: {ex.InnerException?.Message ?? ex.Message}");
        }

        return options.Errors() is { Count: > 0 } errors ? throw new CliException(string.Join(" ", errors)) : options;
    }

    private static string Describe(Exception exception) => exception switch
    {
        PostgresException { SqlState: PostgresErrorCodes.LockNotAvailable } postgres =>
            $"{postgres.MessageText}: another session holds a lock migrate needs (Schema:LockTimeout); retry when it has finished",
        PostgresException postgres => $"{postgres.SqlState}: {postgres.MessageText}",
        _ => exception.Message,
    };

    /// <summary>The partition count is fixed when the schema is created; say so when the setting asks for another.</summary>
    private static void WarnWhenPartitionCountDiffers(string connectionString, SchemaOptions options)
    {
        using var connection = new NpgsqlConnection(connectionString);
        connection.Open();
        using var command = new NpgsqlCommand("SELECT count(*)::int FROM pg_inherits WHERE inhparent = 'todos_active'::regclass", connection);
        var existing = (int)command.ExecuteScalar()!;
        if (existing != options.ActivePartitions)
        {
            AnsiConsole.MarkupLineInterpolated(
                $"[yellow]migrate: todos_active has {existing} partitions; Schema:ActivePartitions={options.ActivePartitions} applies only when the schema is created (use `partitions split` to change it)[/]");
        }
    }
}
