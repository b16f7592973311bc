using YamlDotNet.RepresentationModel;

namespace TodoScale.Tests.Infrastructure;

/// <summary>The alerting and recording rules in dashboards/prometheus/rules, read as YAML.</summary>
internal static class RuleFiles
{
    public sealed record Alert(string Name, string Expression, string Severity, string Component, string Summary, string Description, string RunbookUrl);

    public static IEnumerable<Alert> Alerts(string dashboardsFolder) =>
        Rules(dashboardsFolder).Where(r => r.Children.ContainsKey("alert")).Select(rule =>
        {
            var labels = rule.Children.TryGetValue("labels", out var l) ? (YamlMappingNode)l : new YamlMappingNode();
            var annotations = rule.Children.TryGetValue("annotations", out var a) ? (YamlMappingNode)a : new YamlMappingNode();
            return new Alert(
                Scalar(rule, "alert"), Scalar(rule, "expr"), Scalar(labels, "severity"), Scalar(labels, "component"),
                Scalar(annotations, "summary"), Scalar(annotations, "description"), Scalar(annotations, "runbook_url"));
        });

    /// <summary>The series the recording rules make (Prometheus computes them; no service exposes them).</summary>
    public static IEnumerable<string> Recorded(string dashboardsFolder) =>
        Rules(dashboardsFolder).Where(r => r.Children.ContainsKey("record")).Select(r => Scalar(r, "record"));

    /// <summary>Every rule's expression, alerts and recording rules alike.</summary>
    public static IEnumerable<string> Expressions(string dashboardsFolder) => Rules(dashboardsFolder).Select(r => Scalar(r, "expr"));

    private static IEnumerable<YamlMappingNode> Rules(string dashboardsFolder)
    {
        foreach (var file in Directory.GetFiles(Path.Combine(dashboardsFolder, "prometheus", "rules"), "*.yml"))
        {
            var yaml = new YamlStream();
            using (var reader = new StreamReader(file))
            {
                yaml.Load(reader);
            }

            var groups = (YamlSequenceNode)((YamlMappingNode)yaml.Documents[0].RootNode).Children["groups"];
            foreach (var group in groups.Cast<YamlMappingNode>())
            {
                foreach (var rule in ((YamlSequenceNode)group.Children["rules"]).Cast<YamlMappingNode>())
                {
                    yield return rule;
                }
            }
        }
    }

    private static string Scalar(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(key, out var value) ? ((YamlScalarNode)value).Value ?? "" : "";
}
