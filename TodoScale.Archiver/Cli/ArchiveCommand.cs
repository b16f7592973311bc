using System.CommandLine;
using Microsoft.Extensions.Configuration;
using Npgsql;
using Spectre.Console;
using TodoScale.Archiver.Archiving;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `archive --once`: one archival pass over every active partition, now. Settings come from the Archive section
/// and the options here override them. Exit 0 after a pass (a summary line with rows moved and rows/s), 1 when
/// the database fails it, 2 for a bad option or setting (nothing touched).
/// </summary>
internal static class ArchiveCommand
{
    public static Command Create()
    {
        var once = new Option<bool>("--once") { Description = "Run one pass now and exit (the worker runs its passes on a schedule)." };
        var olderThan = new Option<string?>("--older-than") { Description = "Archive subtrees finished longer ago than this: 30d, 12h, 90m (default Archive:OlderThan, 30d)." };
        var batchSize = new Option<int?>("--batch-size") { Description = "Top-level todos per batch, each with its subtree (default Archive:BatchSize, 5000)." };
        var parallel = new Option<int?>("--parallel") { Description = "Partitions worked at once (default Archive:Parallel, one per core)." };
        var command = new Command("archive", "Move finished todos (whole subtrees) from todos_active to the monthly archive.")
        {
            once, olderThan, batchSize, parallel,
        };
        command.SetAction((parseResult, cancellationToken) => RunAsync(
            parseResult.GetValue(once), parseResult.GetValue(olderThan), parseResult.GetValue(batchSize), parseResult.GetValue(parallel), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(bool once, string? olderThan, int? batchSize, int? parallel, CancellationToken cancellationToken)
    {
        ArchivePassResult? result = null;
        TodoArchiver? archiver = null;
        try
        {
            if (!once)
            {
                throw new CliException("archive runs one pass with --once (the worker, `serve`, runs them on its schedule).");
            }

            var configuration = CliConfiguration.Load();
            var connectionString = configuration.RequirePrimaryConnectionString();
            var options = LoadOptions(configuration, olderThan, batchSize, parallel);
            await using var dataSource = ArchiverDataSource.Create(connectionString, options.Role);
            archiver = new TodoArchiver(dataSource, options, TimeProvider.System);

            AnsiConsole.MarkupLineInterpolated(
                $"[grey]archive:[/] subtrees finished before now - {options.OlderThan}, {options.BatchSize} per batch, {options.Parallel} partition(s) at a time");
            var progress = new ConsoleProgress();
            result = Console.IsOutputRedirected
                ? await archiver.RunPassAsync(progress, cancellationToken)
                : await AnsiConsole.Status().StartAsync("archiving...", async context =>
                {
                    progress.Status = context;
                    return await archiver.RunPassAsync(progress, cancellationToken);
                });
            await archiver.AuditAsync("operator", Environment.UserName, result, null, CancellationToken.None);
            if (result.HeldByLegacyMigration is { } phase)
            {
                AnsiConsole.MarkupLineInterpolated(
                    $"archive: no todos moved: a legacy migration is in progress (phase {phase}); finished todos are archived after `legacy finalize`");
            }

            var seconds = Math.Max(result.Elapsed.TotalSeconds, 0.001);
            AnsiConsole.MarkupLineInterpolated(
                $"archive: moved {result.RowsMoved:N0} todos ({result.RootsMoved:N0} trees) from {result.Partitions.Count} partitions in {seconds:0.0} s ({result.RowsMoved / seconds:N0} rows/s), {result.Batches} batches, {result.SkippedPartitions} partition(s) skipped (another archiver had them), {result.Analyzed.Count} analyzed ({result.Analyzing.TotalSeconds:0.0} s of ANALYZE){(result.RowTriggersSkipped ? "" : "; per-row triggers on (Archive:SkipRowTriggers is false, or the archiver's role may not set session_replication_role)")}");

            var ai = await archiver.RunAiPassAsync(null, cancellationToken);
            await archiver.AuditAsync("operator", Environment.UserName, ai, null, CancellationToken.None, "ai_interactions");
            AnsiConsole.MarkupLineInterpolated(
                $"archive: moved {ai.RowsMoved:N0} AI interactions older than {options.AiOlderThan.TotalDays:0.#} days in {ai.Elapsed.TotalSeconds:0.0} s, {ai.Batches} batches");
            return ExitCodes.Success;
        }
        catch (CliException ex)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]archive: {ex.Message}[/]");
            return ex.ExitCode;
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]archive failed: {Failures.Describe(ex)}[/]");
            AnsiConsole.MarkupLine("[red]  every committed batch stays moved; nothing is half-moved; rerun to continue[/]");
            if (archiver is not null)
            {
                try
                {
                    await archiver.AuditAsync("operator", Environment.UserName, result, ex, CancellationToken.None);
                }
                catch (NpgsqlException)
                {
                    // The database that failed the pass may not take the audit entry either.
                }
            }

            return ExitCodes.Failure;
        }
    }

    private static ArchiveOptions LoadOptions(IConfiguration configuration, string? olderThan, int? batchSize, int? parallel) =>
        configuration.BindOptions<ArchiveOptions>(ArchiveOptions.Section, o => o.Errors(), options =>
        {
            if (olderThan is not null)
            {
                options.OlderThan = ArchiveOptions.ParseDuration(olderThan)
                    ?? throw new CliException($"--older-than '{olderThan}' is not a duration; use e.g. 30d, 12h, 90m.");
            }

            options.BatchSize = batchSize ?? options.BatchSize;
            options.Parallel = parallel ?? options.Parallel;
        });

    private sealed class ConsoleProgress : IProgress<ArchiveProgress>
    {
        private readonly Lock _gate = new();
        private readonly Dictionary<string, ArchiveProgress> _partitions = [];

        public StatusContext? Status { get; set; }

        public void Report(ArchiveProgress value)
        {
            lock (_gate)
            {
                _partitions[value.Partition] = value;
                var done = _partitions.Values.Count(p => p.Finished);
                var rows = _partitions.Values.Sum(p => p.RowsMoved);
                Status?.Status($"archiving: {rows:N0} todos moved, {done} partition(s) done, last {value.Partition}");
                if (Status is null && value.Finished)
                {
                    Console.WriteLine($"archive: {value.Partition} done, {value.RowsMoved:N0} todos in {value.Batches} batch(es)");
                }
            }
        }
    }
}
