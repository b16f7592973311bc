using System.CommandLine;
using TodoScale.Archiver.Alerts;
using TodoScale.Archiver.Worker;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `serve`: the long-running worker: the archive and upkeep schedule, the partition gauges, POST /archive/run,
/// the alert webhook (POST and GET /alerts), /metrics and /health. Rows move as the archiver role; DDL (detach, drop, attach, reindex) runs as the login.
/// </summary>
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
        builder.AddArchiverServices();
        builder.Services.AddAlertWebhook();

        var app = builder.Build();
        app.MapDefaultEndpoints();
        // Internal (the archiver is not exposed to users): the AppHost's "Run archive now" command posts here.
        app.MapPost("/archive/run", (ArchiveScheduler scheduler) =>
            TypedResults.Accepted("/archive/run", new { queued = scheduler.RunNow() }));
        // Alertmanager's local destination (dashboards/alertmanager/alertmanager.yml).
        app.MapAlertWebhook();

        await app.RunAsync(cancellationToken);
        return ExitCodes.Success;
    }
}
