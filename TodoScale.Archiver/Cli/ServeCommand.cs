using System.CommandLine;
using Microsoft.Extensions.Options;
using Npgsql;
using TodoScale.Archiver.Archiving;
using TodoScale.Data;
using TodoScale.Data.Tenancy;

namespace TodoScale.Archiver.Cli;

/// <summary>`serve`: the long-running worker: the archive schedule, POST /archive/run, /metrics and /health.</summary>
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
        var role = builder.Configuration.GetSection(ArchiveOptions.Section)[nameof(ArchiveOptions.Role)] ?? new ArchiveOptions().Role;
        builder.AddNpgsqlDataSource(ConnectionNames.Todos, configureDataSourceBuilder: b => b.ActAs(role));

        builder.Services.AddOptions<ArchiveOptions>().BindConfiguration(ArchiveOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        builder.Services.AddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<ArchiveMetrics>();
        builder.Services.AddSingleton(sp => new TodoArchiver(
            sp.GetRequiredService<NpgsqlDataSource>(), sp.GetRequiredService<IOptions<ArchiveOptions>>().Value,
            sp.GetRequiredService<TimeProvider>(), sp.GetRequiredService<ArchiveMetrics>()));
        builder.Services.AddSingleton<ArchiveScheduler>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<ArchiveScheduler>());

        var app = builder.Build();
        app.MapDefaultEndpoints();
        // Internal (the archiver is not exposed to users): the AppHost's "Run archive now" command posts here.
        app.MapPost("/archive/run", (ArchiveScheduler scheduler) =>
            TypedResults.Accepted("/archive/run", new { queued = scheduler.RunNow() }));

        await app.RunAsync(cancellationToken);
        return ExitCodes.Success;
    }
}
