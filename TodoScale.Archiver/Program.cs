using Spectre.Console;
using TodoScale.Archiver.Cli;

// Piped into a log or a CI step, a line must stay one line: Spectre would wrap at 80 columns.
if (Console.IsOutputRedirected)
{
    AnsiConsole.Profile.Width = 4096;
}

// The archiver is both the long-running worker (`serve`, the default) and the operators' CLI.
var cli = ArchiverCli.Build();

// With no verb it serves, passing host options (--urls ...) through; a word that is no verb is a typo, not a
// reason to start a worker.
if (args is [var first, ..] && !first.StartsWith('-') && cli.Subcommands.All(c => c.Name != first))
{
    AnsiConsole.MarkupLineInterpolated(
        $"[red]'{first}' is not a verb; use one of: {string.Join(", ", cli.Subcommands.Select(c => c.Name))} (--help for details)[/]");
    return ExitCodes.UsageError;
}

return await cli.Parse(args).InvokeAsync();
