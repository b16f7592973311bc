namespace TodoScale.Data;

/// <summary>
/// Names and constants spliced into SQL that cannot take a bind parameter (DDL, COPY, a partition picked from
/// the catalog): quoted here, in one place, never concatenated raw.
/// </summary>
public static class SqlText
{
    /// <summary>An identifier, double-quoted (a name from the catalog or from TodoScale's own constants).</summary>
    public static string Quote(string identifier) => "\"" + identifier.Replace("\"", "\"\"", StringComparison.Ordinal) + "\"";

    /// <summary>A string constant, single-quoted.</summary>
    public static string Literal(string text) => "'" + text.Replace("'", "''", StringComparison.Ordinal) + "'";
}
