using Spectre.Console;
using TodoScale.Archiver.Cli;

// Piped into a log or a CI step, a line must stay one line: Spectre would wrap at 80 columns.
if (Console.IsOutputRedirected)
{
    AnsiConsole.Profile.Width = 4096;
}

// The archiver is both the long-running worker (`serve`, the default) and the operators' CLI.
return await ArchiverCli.Build().Parse(args).InvokeAsync();
