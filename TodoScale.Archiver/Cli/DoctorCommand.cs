using System.CommandLine;
using Spectre.Console;
using TodoScale.Archiver.Partitions;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Cli;

/// <summary>
/// `partitions doctor --user ID (--query NAME | --sql TEXT)`: which partitions and indexes PostgreSQL uses for one
/// user's statement, with the custom and the generic plan; exit 1 on a miss (CI can run it), 2 on bad input.
/// `--list` names the documented statements (the migrations' `-- query:` lines, each by the index it serves).
/// </summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var user = new Option<string?>("--user") { Description = "The user (uuid) whose statement is explained." };
        var query = new Option<string?>("--query") { Description = "A documented statement by name: the index it is written above (see --list)." };
        var sql = new Option<string?>("--sql") { Description = "Your own statement: @user_id or $1 is the user; other @parameters get a value of their type." };
        var list = new Option<bool>("--list") { Description = "List the documented statements and exit." };
        var role = new Option<string>("--as")
        {
            Description = "app: as todoscale_app under row-level security, as the API runs it (default); owner: as the login, the statement's own filters only.",
            DefaultValueFactory = _ => "app",
        };
        role.AcceptOnlyFromAmong("app", "owner");
        var parameters = new Option<string[]>("--param")
        {
            Description = "A value for one of the statement's @parameters, name=value (repeatable); the others get now(), 3, 'todo' by type.",
            AllowMultipleArgumentsPerToken = false,
        };
        var doctor = new Command("doctor",
            "Which partitions and indexes PostgreSQL uses for a user's statement, by custom and generic plan; exits 1 when it reads more than the user's partition or a table without an index.")
        {
            user, query, sql, role, parameters, list,
        };
        doctor.SetAction((parseResult, cancellationToken) => RunAsync(
            parseResult.GetValue(user), parseResult.GetValue(query), parseResult.GetValue(sql), parseResult.GetValue(role) == "app",
            parseResult.GetValue(parameters) ?? [], parseResult.GetValue(list), cancellationToken));
        return doctor;
    }

    private static Task<int> RunAsync(
        string? user, string? query, string? sql, bool asApp, string[] parameters, bool list, CancellationToken cancellationToken) =>
        VerbRunner.RunAsync("partitions doctor", async () =>
        {
            if (list)
            {
                var table = new Table().Title("documented statements (--query NAME)").AddColumns("name", "table", "statement");
                foreach (var q in DocumentedQueries.All)
                {
                    table.AddRow(Markup.Escape(q.Index), Markup.Escape(q.Table), Markup.Escape(q.Sql));
                }

                AnsiConsole.Write(table);
                return ExitCodes.Success;
            }

            if (!Guid.TryParse(user, out var userId) || userId == Guid.Empty)
            {
                throw new CliException(user is null ? "--user is required: the user (uuid) whose statement is explained." : $"--user '{user}' is not a user id (a uuid).");
            }

            if ((query is null) == (sql is null))
            {
                throw new CliException("give one of --query NAME (see --list) or --sql TEXT.");
            }

            var statement = sql ?? DocumentedQueries.All.FirstOrDefault(q => q.Index == query)?.Sql
                ?? throw new CliException($"no documented statement '{query}'; --list shows them: {string.Join(", ", DocumentedQueries.All.Select(q => q.Index))}");
            var given = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (var parameter in parameters)
            {
                var equals = parameter.IndexOf('=', StringComparison.Ordinal);
                if (equals <= 0 || !given.TryAdd(parameter[..equals].TrimStart('@'), parameter[(equals + 1)..]))
                {
                    throw new CliException($"--param '{parameter}' is not name=value, or names a parameter twice.");
                }
            }

            var tools = OperatorTools.Load();
            await using var owner = tools.OwnerDataSource();
            Diagnosis diagnosis;
            try
            {
                diagnosis = await new QueryDoctor(owner).DiagnoseAsync(statement, userId, asApp, given, cancellationToken);
            }
            catch (QueryDoctorException ex)
            {
                throw new CliException(ex.Message);
            }

            Print(query ?? "the statement given", diagnosis);
            return diagnosis.Healthy ? ExitCodes.Success : ExitCodes.Failure;
        });

    private static void Print(string name, Diagnosis d)
    {
        AnsiConsole.MarkupLineInterpolated($"partitions doctor: {name} for user {d.UserId}, as {d.Role}");
        AnsiConsole.MarkupLineInterpolated($"  statement: {d.Statement}");
        AnsiConsole.MarkupLineInterpolated($"  the user's partitions: {string.Join(", ", d.UsersPartitions.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} -> {p.Value}"))}");
        foreach (var plan in new[] { d.Custom, d.Generic })
        {
            var label = plan == d.Custom ? "custom plan (values known when planning)" : "generic plan (as a prepared statement runs after 5 executions)";
            AnsiConsole.MarkupLineInterpolated($"  {label}: {plan.Pruning}");
            // One line per way of reading (node and index), with the relations it reads.
            foreach (var way in plan.Scans.GroupBy(s => (s.NodeType, s.Index, s.Empty)))
            {
                var relations = way.Select(s => s.Relation).Distinct().ToList();
                var on = relations.Count <= 3 ? string.Join(", ", relations) : $"{relations.Count} relations: {string.Join(", ", relations.Take(3))}, ...";
                var how = way.Key.Index is { } index ? $" using {index}" : way.Key.Empty ? " (no index; empty, so free)" : " (no index)";
                AnsiConsole.MarkupLineInterpolated($"    {way.Key.NodeType} on {on}{how}");
            }

            foreach (var miss in plan.Misses)
            {
                AnsiConsole.MarkupLineInterpolated($"    [red]miss: {miss}[/]");
            }
        }

        if (d.Healthy)
        {
            AnsiConsole.MarkupLine("verdict: [green]OK[/]: both plans read only the user's partition, each through an index");
        }
        else
        {
            AnsiConsole.MarkupLineInterpolated($"verdict: [red]MISS[/]: {string.Join("; ", d.Custom.Misses.Concat(d.Generic.Misses).Distinct())}");
        }
    }
}
