using System.Text.RegularExpressions;

namespace TodoScale.Data.Schema;

/// <summary>
/// The statements the migrations write above each index they create (`-- query: ...` then `CREATE INDEX name`):
/// what each index is for, named by the index. `partitions doctor` explains them by name, and the index report
/// tells an unused index from one whose query is written down.
/// </summary>
public static partial class DocumentedQueries
{
    /// <summary>One documented statement: the index it is written above, and its SQL with @parameters.</summary>
    public sealed record Query(string Index, string Table, string Sql);

    public static IReadOnlyList<Query> All { get; } = Read();

    private static List<Query> Read()
    {
        var queries = new List<Query>();
        foreach (var migration in SchemaMigrator.EmbeddedMigrations())
        {
            foreach (Match match in QueryAboveIndex().Matches(SchemaMigrator.ReadEmbeddedMigration(migration).ReplaceLineEndings("\n")))
            {
                queries.Add(new Query(match.Groups["index"].Value, match.Groups["table"].Value, match.Groups["sql"].Value.Trim()));
            }
        }

        return queries;
    }

    [GeneratedRegex(@"^-- query: (?<sql>[^\n]+)\n(?:--[^\n]*\n)*CREATE INDEX (?<index>\w+) ON (?:ONLY )?(?<table>\w+)", RegexOptions.Multiline)]
    private static partial Regex QueryAboveIndex();
}
