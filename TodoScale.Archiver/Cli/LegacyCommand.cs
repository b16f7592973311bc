using System.CommandLine;
using Spectre.Console;
using TodoScale.Archiver.Legacy;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `legacy status | start | backfill | validate | switch | rollback | finalize`: the online migration from the original design's single table,
/// `todos`. Exit 0 when done, 1 when refused by the state of things (out of order, mismatches; nothing changed),
/// 2 for a bad argument or setting.
/// </summary>
internal static class LegacyCommand
{
    public static Command Create()
    {
        var status = new Command("status", "The migration's phase, rows on both sides, backfill progress, rejects and the time left in the window.");
        status.SetAction((_, cancellationToken) => RunAsync("status", migration => StatusAsync(migration, cancellationToken)));

        var start = new Command("start", "Create TodoScale's schema if absent, the dual-write trigger on `todos`, the backfill's index and the API's views, in short lock-bounded steps.");
        start.SetAction((_, cancellationToken) => RunAsync("start", async migration =>
        {
            var (created, lockWait) = await migration.StartAsync(Environment.UserName, cancellationToken);
            AnsiConsole.WriteLine(created
                ? $"legacy start: dual-write trigger {LegacyMigration.ForwardTrigger} on todos created (longest lock hold {lockWait.TotalMilliseconds:0} ms); next: legacy backfill"
                : "legacy start: already started (trigger and index in place); next: legacy backfill");
            return ExitCodes.Success;
        }, createSchema: true));

        var batchSize = new Option<int?>("--batch-size") { Description = "Rows per batch (default Legacy:BatchSize, 10000)." };
        var parallel = new Option<int?>("--parallel") { Description = "Batches copied at once, each on its own connection (default Legacy:Parallel, one per CPU)." };
        var backfill = new Command("backfill", "Copy `todos` into TodoScale's tables in keyset batches, parents first; resumable after a kill.") { batchSize, parallel };
        backfill.SetAction((parseResult, cancellationToken) => RunAsync("backfill", migration => BackfillAsync(migration, cancellationToken),
            options =>
            {
                options.BatchSize = parseResult.GetValue(batchSize) ?? options.BatchSize;
                options.Parallel = parseResult.GetValue(parallel) ?? options.Parallel;
            }));

        var sample = new Option<int?>("--sample") { Description = "Compare only this percentage of the user buckets (1-100): a quick check that does not move the phase." };
        var validate = new Command("validate", "Compare `todos` with todos_active + todos_archived per user bucket (count, checksum); list every mismatching id.") { sample };
        validate.SetAction((parseResult, cancellationToken) => RunAsync("validate", migration => ValidateAsync(migration, parseResult.GetValue(sample), cancellationToken)));

        var switchTo = new Command("switch", "Serve from TodoScale's tables (the API follows within a second); a reverse trigger keeps `todos` current for a rollback.");
        switchTo.SetAction((_, cancellationToken) => RunAsync("switch", async migration =>
        {
            var (already, lockWait) = await migration.SwitchAsync(Environment.UserName, cancellationToken);
            AnsiConsole.WriteLine(already
                ? "legacy switch: already switched; the API serves from TodoScale's tables"
                : $"legacy switch: the API serves from TodoScale's tables; reverse trigger {LegacyMigration.ReverseTrigger} keeps todos current " +
                  $"(longest lock hold {lockWait.TotalMilliseconds:0} ms); `legacy rollback` goes back, `legacy finalize` ends the migration after the window");
            return ExitCodes.Success;
        }));

        var rollback = new Command("rollback", "Serve from `todos` again (instant: it is kept current since the switch).");
        rollback.SetAction((_, cancellationToken) => RunAsync("rollback", async migration =>
        {
            AnsiConsole.WriteLine(await migration.RollbackAsync(Environment.UserName, cancellationToken)
                ? "legacy rollback: the API serves from todos again; both sides stay in sync; `legacy switch` when ready"
                : "legacy rollback: already rolled back; the API serves from todos");
            return ExitCodes.Success;
        }));

        var force = new Option<bool>("--force") { Description = "Finalize inside the retention window (drops the instant rollback)." };
        var finalize = new Command("finalize", "After the retention window: drop `todos`, the triggers and the API's legacy views.") { force };
        finalize.SetAction((parseResult, cancellationToken) => RunAsync("finalize", async migration =>
        {
            var (already, lockWait) = await migration.FinalizeAsync(Environment.UserName, parseResult.GetValue(force), cancellationToken);
            AnsiConsole.WriteLine(already
                ? "legacy finalize: already finalized"
                : $"legacy finalize: todos, its triggers and the legacy views dropped (longest lock hold on todos_active {lockWait.TotalMilliseconds:0} ms); the migration is over, the archiver resumes");
            return ExitCodes.Success;
        }));

        return new Command("legacy", "Online migration from the legacy single `todos` table: status, start, backfill, validate, switch, rollback, finalize.")
        {
            status, start, backfill, validate, switchTo, rollback, finalize,
        };
    }

    /// <param name="createSchema">Apply TodoScale's migrations first (start creates the schema beside `todos` when absent).</param>
    private static Task<int> RunAsync(string verb, Func<LegacyMigration, Task<int>> body, Action<LegacyOptions>? overrides = null, bool createSchema = false) =>
        VerbRunner.RunAsync($"legacy {verb}", async () =>
        {
            var configuration = CliConfiguration.Load();
            var tools = OperatorTools.Load(configuration);
            var options = configuration.BindOptions<LegacyOptions>(LegacyOptions.Section, o => o.Errors(), overrides);
            if (createSchema)
            {
                MigrationResult schema;
                try
                {
                    schema = await new SchemaMigrator(configuration.RequirePrimaryConnectionString(), MigrateCommand.LoadOptions(configuration),
                        message => AnsiConsole.MarkupLineInterpolated($"[grey]  {message}[/]")).MigrateAsync();
                }
                catch (Exception ex) when (ex is SchemaLockException or EvolveDb.EvolveException)
                {
                    throw new CliException($"TodoScale's schema could not be brought current: {ex.InnerException?.Message ?? ex.Message}", ExitCodes.Failure);
                }

                AnsiConsole.WriteLine($"legacy {verb}: TodoScale's schema is current ({schema.Applied} migration(s) applied)");
            }

            await using var owner = tools.OwnerDataSource();
            await using var archiver = tools.ArchiverRoleDataSource();
            try
            {
                return await body(new LegacyMigration(owner, archiver, options, TimeProvider.System));
            }
            catch (LegacyOrderException ex)
            {
                throw new CliException($"refused: {ex.Message}", ExitCodes.Failure);
            }
        });

    private static async Task<int> StatusAsync(LegacyMigration migration, CancellationToken cancellationToken)
    {
        var status = await migration.StatusAsync(cancellationToken);
        var state = status.State;
        var table = new Table().Title("legacy migration").AddColumn("").AddColumn("");
        table.AddRow("phase", state?.Phase ?? (status.LegacyTableExists ? "not started" : "no legacy table"));
        table.AddRow("rows in todos (estimate)", status.LegacyRows.ToString("N0"));
        table.AddRow("rows in todos_active + todos_archived (estimate)", $"{status.ActiveRows:N0} + {status.ArchivedRows:N0}");
        if (state is not null)
        {
            table.AddRow("started", Format(state.StartedAt));
            var progress = status.LegacyRows > 0 ? $" (about {Math.Min(100, 100.0 * state.BackfillRows / status.LegacyRows):0.#}%)" : "";
            table.AddRow("backfill", state.BackfilledAt is { } done
                ? $"done {Format(done)}, {state.BackfillRows:N0} rows copied"
                : $"{state.BackfillRows:N0} rows copied{progress}, done up to id {state.BackfillId?.ToString() ?? "-"}");
            table.AddRow("validated", state.ValidatedAt is { } validated ? Format(validated) : "no");
            table.AddRow("switched", state.SwitchedAt is { } switched
                ? $"{Format(switched)}; window ends {Format(switched + status.RetentionWindow)} ({Left(switched + status.RetentionWindow - DateTimeOffset.UtcNow)})"
                : "no");
        }

        table.AddRow("rejected rows (legacy_rejects)", status.Rejects.ToString("N0"));
        table.AddRow("triggers", $"forward {(status.ForwardTrigger ? "on" : "off")}, reverse {(status.ReverseTrigger ? "on" : "off")}");
        AnsiConsole.Write(table);
        AnsiConsole.WriteLine($"legacy status: {state?.Phase ?? "not started"}, {state?.BackfillRows ?? 0:N0} rows backfilled, {status.Rejects:N0} rejected");
        return ExitCodes.Success;

        static string Format(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss 'UTC'");
        static string Left(TimeSpan left) => left <= TimeSpan.Zero ? "over: finalize may run" : $"{left.TotalDays:0.0} days left";
    }

    private static async Task<int> BackfillAsync(LegacyMigration migration, CancellationToken cancellationToken)
    {
        BackfillResult result;
        if (Console.IsOutputRedirected)
        {
            var last = 0L;
            result = await migration.BackfillAsync(Environment.UserName, new Progress<BackfillProgress>(p =>
            {
                var now = Environment.TickCount64;
                if (now - Interlocked.Exchange(ref last, now) >= 2_000)
                {
                    Console.WriteLine($"legacy backfill: {p.Read:N0} of about {p.Total:N0} rows read");
                }
            }), cancellationToken);
        }
        else
        {
            result = await AnsiConsole.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RowsPerSecondColumn(), new RemainingTimeColumn())
                .StartAsync(async context =>
                {
                    var task = context.AddTask("backfill");
                    var outcome = await migration.BackfillAsync(Environment.UserName, new Progress<BackfillProgress>(p =>
                    {
                        task.MaxValue = Math.Max(p.Total, 1);
                        task.Value = Math.Max(task.Value, p.Read); // workers report in any order
                    }), cancellationToken);
                    task.Value = task.MaxValue;
                    return outcome;
                });
        }

        if (result.AlreadyDone)
        {
            AnsiConsole.WriteLine($"legacy backfill: already done ({result.TotalCopied:N0} rows copied); next: legacy validate");
            return ExitCodes.Success;
        }

        var seconds = Math.Max(result.Elapsed.TotalSeconds, 0.001);
        var what = result.RetriedRejects ? "retried the rejected rows: read" : "read";
        AnsiConsole.WriteLine(
            $"legacy backfill: {what} {result.Scanned:N0} rows: {result.Scanned - result.Rejected:N0} taken, {result.Rejected:N0} rejected; " +
            $"copied {result.Copied:N0} (the rest of the taken were there already: written by the trigger, a previous run, or copied ahead as an ancestor), " +
            $"in {result.Batches} batches ({result.Parallel} at once), {seconds:0.0} s ({result.Scanned / seconds:N0} rows/s); " +
            $"{result.TotalCopied:N0} copied in all; next: legacy validate" +
            (result.RowTriggersSkipped ? "" : "; per-row triggers on (Legacy:SkipRowTriggers is false, or the archiver's role may not set session_replication_role)"));
        if (result.Rejected > 0)
        {
            AnsiConsole.MarkupLine(
                "[yellow]legacy backfill: rejected rows are listed by `legacy validate`, with the reason; fix them in todos (the trigger copies a fixed row), " +
                "or run `legacy backfill` again to retry them all[/]");
        }

        return ExitCodes.Success;
    }

    private static async Task<int> ValidateAsync(LegacyMigration migration, int? sample, CancellationToken cancellationToken)
    {
        if (sample is < 1 or > 100)
        {
            throw new CliException($"--sample {sample}: give a percentage from 1 to 100.");
        }

        var result = Console.IsOutputRedirected
            ? await migration.ValidateAsync(Environment.UserName, sample, cancellationToken)
            : await AnsiConsole.Status().StartAsync("validating...", _ => migration.ValidateAsync(Environment.UserName, sample, cancellationToken));
        foreach (var mismatch in result.Mismatches)
        {
            Console.WriteLine($"mismatch: user {mismatch.UserId} todo {mismatch.Id}: {mismatch.Kind}{(mismatch.Reason is null ? "" : $" (rejected, {mismatch.Reason}: {mismatch.Message})")}");
        }

        var scope = result.Sample ? $"{result.BucketsChecked} of {result.Buckets} user buckets (sample)" : $"all {result.Buckets} user buckets";
        var reasons = result.Rejected == 0 ? "" : $" ({string.Join(", ", result.RejectedByReason.Select(r => $"{r.Reason} {r.Rows:N0}"))})";
        var line = $"legacy validate: {scope}, {result.LegacyRows:N0} rows in todos: {result.Taken:N0} taken, {result.Rejected:N0} rejected{reasons}, " +
                   $"{result.Unexplained:N0} other; {result.TodoScaleRows:N0} rows in TodoScale, {result.Mismatches.Count(m => m.Kind == Mismatch.OnlyInTodoScale):N0} only there; " +
                   $"{result.Mismatches.Count:N0} mismatch(es), {result.Elapsed.TotalSeconds:0.0} s";
        if (result.Mismatches.Count > 0)
        {
            AnsiConsole.MarkupLineInterpolated($"[red]{line}[/]");
            return ExitCodes.Failure;
        }

        AnsiConsole.WriteLine(line + (result.Sample ? "" : "; next: legacy switch"));
        return ExitCodes.Success;
    }
}
