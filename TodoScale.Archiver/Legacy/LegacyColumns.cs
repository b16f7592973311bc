using Npgsql;
using TodoScale.Data.Legacy;

namespace TodoScale.Archiver.Legacy;

/// <summary>
/// The columns `todos` must have for the migration, and the types it takes for each: those of the original design
/// (UUID, VARCHAR(500), TEXT, VARCHAR(20), INTEGER, TIMESTAMPTZ, BOOLEAN), and for the same columns smallint,
/// integer or bigint for the whole numbers and text or varchar of any length for the texts, in any column order.
/// `legacy start` reads the table's real types from the catalog and refuses, naming each column and its type, before
/// it creates anything: a type the backfill would misread must never look like an empty table.
/// </summary>
public static class LegacyColumns
{
    private static readonly string[] Uuid = ["uuid"];
    private static readonly string[] Text = ["text", "varchar"];
    private static readonly string[] Whole = ["int2", "int4", "int8"];
    private static readonly string[] Time = ["timestamptz"];
    private static readonly string[] Flag = ["bool"];

    /// <summary>Every column of <see cref="LegacySchema.Columns"/> with the catalog type names (pg_type.typname) it may have.</summary>
    public static readonly IReadOnlyDictionary<string, string[]> Accepted = new Dictionary<string, string[]>
    {
        ["id"] = Uuid,
        ["user_id"] = Uuid,
        ["parent_todo_id"] = Uuid,
        ["project_id"] = Uuid,
        ["title"] = Text,
        ["description"] = Text,
        ["status"] = Text,
        ["priority"] = Whole,
        ["due_date"] = Time,
        ["completed_at"] = Time,
        ["ai_generated"] = Flag,
        ["depth"] = Whole,
        ["created_at"] = Time,
        ["updated_at"] = Time,
    };

    private static readonly IReadOnlyDictionary<string[], string> Described = new Dictionary<string[], string>
    {
        [Uuid] = "uuid",
        [Text] = "text or varchar",
        [Whole] = "smallint, integer or bigint",
        [Time] = "timestamptz",
        [Flag] = "boolean",
    };

    /// <summary>
    /// Throws <see cref="LegacyOrderException"/> naming every column of `todos` that is missing or of a type the
    /// migration cannot take (a base type, not a domain or an array); returns when all of them are usable.
    /// </summary>
    public static async Task RequireAsync(NpgsqlDataSource owner, CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            """
            SELECT a.attname::text, t.typname::text, format_type(a.atttypid, a.atttypmod)
              FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
             WHERE a.attrelid = 'todos'::regclass AND a.attnum > 0 AND NOT a.attisdropped
            """);
        var found = new Dictionary<string, (string Type, string Shown)>(StringComparer.Ordinal);
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                found[reader.GetString(0)] = (reader.GetString(1), reader.GetString(2));
            }
        }

        var problems = new List<string>();
        foreach (var (column, types) in Accepted)
        {
            if (!found.TryGetValue(column, out var actual))
            {
                problems.Add($"column {column} is missing ({Described[types]} expected)");
            }
            else if (!types.Contains(actual.Type, StringComparer.Ordinal))
            {
                problems.Add($"column {column} is {actual.Shown}, which the migration cannot take ({Described[types]} expected)");
            }
        }

        if (problems.Count > 0)
        {
            throw new LegacyOrderException($"`todos` cannot be migrated as it is: {string.Join("; ", problems)}; nothing was created");
        }
    }
}
