using System.CommandLine;

namespace TodoScale.Archiver.Cli;

/// <summary>The verbs of the operators' CLI. Each verb lives in its own class beside this one.</summary>
public static class ArchiverCli
{
    public static RootCommand Build()
    {
        var serve = ServeCommand.Create();
        var root = new RootCommand("TodoScale archiver: the long-running worker (serve, the default) and the operators' CLI.")
        {
            serve,
            MigrateCommand.Create(),
            TokenCommand.Create(),
            ArchiveCommand.Create(),
            MaintainCommand.Create(),
            ColdCommand.Create(),
            BackupCommand.Create(),
            PartitionsCommand.Create(),
            LegacyCommand.Create(),
        };

        // With no verb the archiver serves; host arguments (e.g. --urls) pass through to ASP.NET Core.
        root.TreatUnmatchedTokensAsErrors = false;
        root.Action = serve.Action;
        return root;
    }
}
