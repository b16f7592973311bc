using TodoScale.Archiver.Cli;

// The archiver is both the long-running worker (`serve`, the default) and the operators' CLI.
return await ArchiverCli.Build().Parse(args).InvokeAsync();
