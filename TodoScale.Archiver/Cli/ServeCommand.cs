using System.CommandLine;
using TodoScale.Data;

namespace TodoScale.Archiver.Cli;

/// <summary>`serve`: the long-running worker with /metrics and /health.</summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var command = new Command("serve", "Run the long-running worker (schedules, /metrics, /health). The default verb.")
        {
            TreatUnmatchedTokensAsErrors = false,
        };
        command.SetAction((parseResult, cancellationToken) => RunAsync([.. parseResult.UnmatchedTokens], cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(string[] hostArgs, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateBuilder(hostArgs);
        builder.AddServiceDefaults();
        builder.AddNpgsqlDataSource(ConnectionNames.Todos);

        var app = builder.Build();
        app.MapDefaultEndpoints();

        await app.RunAsync(cancellationToken);
        return ExitCodes.Success;
    }
}
