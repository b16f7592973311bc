using System.Text.RegularExpressions;

namespace TodoScale.Archiver.Database;

/// <summary>
/// Static SQL of more than a few lines lives in embedded <c>.sql</c> files beside the feature that runs it
/// (<c>Legacy/Sql/*.sql</c>), read once. A file names what C# fills in as <c>{placeholder}</c>: names from
/// TodoScale's own constants, never a value (values are bind parameters). Whole-line <c>--</c> comments are left out.
/// </summary>
public static partial class SqlResource
{
    /// <summary>The file at <paramref name="path"/> (relative to the project, e.g. "Legacy/Sql/backfill-batch.sql") with <paramref name="values"/> filled in.</summary>
    public static string Read(string path, params (string Name, string Value)[] values)
    {
        using var stream = typeof(SqlResource).Assembly.GetManifestResourceStream(path)
            ?? throw new InvalidOperationException($"no embedded SQL file {path} (an EmbeddedResource under **/Sql/*.sql)");
        using var reader = new StreamReader(stream);
        var text = string.Join('\n', reader.ReadToEnd().Split('\n').Where(line => !line.TrimStart().StartsWith("--", StringComparison.Ordinal)));
        return Fill(text, values, complete: false);
    }

    /// <summary>Fills <paramref name="values"/> in; with <paramref name="complete"/>, a placeholder left unfilled is an error.</summary>
    public static string Fill(string sql, IEnumerable<(string Name, string Value)> values, bool complete = true)
    {
        foreach (var (name, value) in values)
        {
            var token = "{" + name + "}";
            sql = sql.Contains(token, StringComparison.Ordinal)
                ? sql.Replace(token, value, StringComparison.Ordinal)
                : throw new InvalidOperationException($"the SQL has no placeholder {token}");
        }

        return complete && Placeholder().Match(sql) is { Success: true } left
            ? throw new InvalidOperationException($"the SQL's placeholder {left.Value} was not filled in")
            : sql;
    }

    [GeneratedRegex(@"\{[a-z_]+\}")]
    private static partial Regex Placeholder();
}
