using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Spectre.Console;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `token --user &lt;uuid&gt; [--admin] [--lifetime 12:00:00]`: prints a development bearer token signed with the
/// configured key (Auth:SigningKey, e.g. Auth__SigningKey=$(cat .data/auth-signing.key)), alone on stdout, so
/// `TOKEN=$(... token --user ...)` works.
/// </summary>
internal static class TokenCommand
{
    public static Command Create()
    {
        var user = new Option<string>("--user") { Description = "The user's id (a uuid): the token's sub.", Required = true };
        var admin = new Option<bool>("--admin") { Description = "Add the admin scope (operator endpoints)." };
        var lifetime = new Option<TimeSpan>("--lifetime")
        {
            Description = "How long the token is valid (hh:mm:ss, at most 7.00:00:00).",
            DefaultValueFactory = _ => TimeSpan.FromHours(12),
        };
        var command = new Command("token", "Print a development bearer token for a user, signed with Auth:SigningKey.") { user, admin, lifetime };
        command.SetAction(parse => Run(parse.GetValue(user)!, parse.GetValue(admin), parse.GetValue(lifetime)));
        return command;
    }

    private static int Run(string user, bool admin, TimeSpan lifetime)
    {
        try
        {
            if (!Guid.TryParse(user, out var userId) || userId == Guid.Empty)
            {
                throw new CliException($"--user must be a non-empty uuid, not '{user}'.");
            }

            if (lifetime <= TimeSpan.Zero || lifetime > TimeSpan.FromDays(7))
            {
                throw new CliException($"--lifetime must be more than 0 and at most 7.00:00:00, not {lifetime}.");
            }

            var options = new AuthOptions();
            CliConfiguration.Load().GetSection(AuthOptions.SectionName).Bind(options);
            string token;
            try
            {
                token = TodoScaleTokens.Create(options, userId, admin, DateTimeOffset.UtcNow, lifetime);
            }
            catch (InvalidOperationException ex)
            {
                throw new CliException(ex.Message);
            }

            Console.Out.WriteLine(token);
            return ExitCodes.Success;
        }
        catch (CliException ex)
        {
            var error = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            error.MarkupLineInterpolated($"[red]token: {ex.Message}[/]");
            return ex.ExitCode;
        }
    }
}
