using System.Text.RegularExpressions;

namespace TodoScale.Tests.Infrastructure;

/// <summary>Pulls the metric names out of PromQL expressions, to check them against what services expose.</summary>
internal static partial class PromQl
{
    private static readonly HashSet<string> Keywords =
    [
        "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset",
        "sum", "avg", "min", "max", "count", "topk", "bottomk", "quantile", "stddev", "stdvar", "count_values", "group",
    ];

    /// <summary>Series Prometheus makes itself rather than scraping: not expected on any /metrics page.</summary>
    public static readonly HashSet<string> Synthetic = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];

    public static IEnumerable<string> MetricNames(string expression)
    {
        var stripped = Strings().Replace(expression, "\"\"");
        stripped = LabelMatchers().Replace(stripped, " ");
        stripped = Ranges().Replace(stripped, " ");
        stripped = Grouping().Replace(stripped, " ");
        return Identifiers().Matches(stripped)
            .Where(m => !(m.Index + m.Length < stripped.Length && stripped[m.Index + m.Length] == '(')) // functions
            .Select(m => m.Value)
            .Where(name => !Keywords.Contains(name))
            .Distinct();
    }

    [GeneratedRegex("\"(?:[^\"\\\\]|\\\\.)*\"")]
    private static partial Regex Strings();

    [GeneratedRegex(@"\{[^}]*\}")]
    private static partial Regex LabelMatchers();

    [GeneratedRegex(@"\[[^\]]*\]")]
    private static partial Regex Ranges();

    [GeneratedRegex(@"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")]
    private static partial Regex Grouping();

    [GeneratedRegex(@"(?<![\w$.])[a-zA-Z_:][a-zA-Z0-9_:]*(?![\w.])")]
    private static partial Regex Identifiers();
}
