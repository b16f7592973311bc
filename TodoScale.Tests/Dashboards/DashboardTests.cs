using System.Text.Json;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Dashboards;

/// <summary>dashboards/: Prometheus rules (promtool), Alertmanager's routing (amtool) and Grafana provisioning, checked without a live stack.</summary>
public sealed class DashboardTests
{
    private static readonly string Dashboards = RepositoryPaths.Dashboards;

    [Fact]
    public async Task Prometheus_rules_are_valid_and_pass_their_promtool_unit_tests()
    {
        var rules = Directory.GetFiles(Path.Combine(Dashboards, "prometheus", "rules"), "*.yml");
        var tests = Directory.GetFiles(Path.Combine(Dashboards, "prometheus", "tests"), "*.yml");
        Assert.NotEmpty(rules);
        Assert.NotEmpty(tests);

        var check = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("promtool", ["check", "rules", .. rules]), TimeSpan.FromSeconds(60));
        Assert.True(check.ExitCode == 0, check.Output);

        var test = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("promtool", ["test", "rules", .. tests]), TimeSpan.FromSeconds(60));
        Assert.True(test.ExitCode == 0, test.Output);
        Assert.DoesNotContain("FAILED", test.Output);
    }

    [Fact]
    public async Task Alertmanager_routing_is_valid_and_sends_every_alert_to_its_severitys_receiver()
    {
        var config = Path.Combine(Dashboards, "alertmanager", "alertmanager.yml");
        var check = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("amtool", ["check-config", config]), TimeSpan.FromSeconds(60));
        Assert.True(check.ExitCode == 0, check.Output);
        Assert.Contains("1 inhibit rules", check.Output);

        foreach (var alert in RuleFiles.Alerts(Dashboards))
        {
            var route = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("amtool",
                ["config", "routes", "test", $"--config.file={config}", $"alertname={alert.Name}", $"severity={alert.Severity}", $"component={alert.Component}", "table=todos_active"]),
                TimeSpan.FromSeconds(60));
            Assert.True(route.ExitCode == 0, route.Output);
            var receivers = route.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(l => l.StartsWith("todoscale-", StringComparison.Ordinal));
            Assert.Equal([alert.Severity == "critical" ? "todoscale-critical" : "todoscale-warning"], receivers);
        }
    }

    [Fact]
    public void Every_alert_has_a_severity_a_summary_a_description_and_a_runbook_section_that_exists()
    {
        var runbooks = File.ReadAllText(Path.Combine(Dashboards, "runbooks.md"));
        var alerts = RuleFiles.Alerts(Dashboards).ToList();
        Assert.NotEmpty(alerts);
        foreach (var alert in alerts)
        {
            Assert.StartsWith("TodoScale", alert.Name);
            Assert.Contains(alert.Severity, new[] { "critical", "warning", "info" });
            // Alertmanager mutes a component's warnings while a critical of the same component fires.
            Assert.False(string.IsNullOrWhiteSpace(alert.Component), $"{alert.Name} has no component label");
            Assert.False(string.IsNullOrWhiteSpace(alert.Summary), alert.Name);
            Assert.False(string.IsNullOrWhiteSpace(alert.Description), alert.Name);
            Assert.Equal($"dashboards/runbooks.md#{alert.Name.ToLowerInvariant()}", alert.RunbookUrl);
            Assert.Contains($"## {alert.Name}\n", runbooks.ReplaceLineEndings("\n"));
        }
    }

    [Fact]
    public void Grafana_dashboards_have_fixed_unique_uids_and_use_the_provisioned_datasource()
    {
        var datasources = File.ReadAllText(Path.Combine(Dashboards, "grafana", "provisioning", "datasources", "prometheus.yml"));
        Assert.Contains("uid: prometheus", datasources);

        var files = Directory.GetFiles(Path.Combine(Dashboards, "grafana", "dashboards"), "*.json");
        Assert.NotEmpty(files);
        var uids = new HashSet<string>();
        foreach (var file in files)
        {
            using var document = JsonDocument.Parse(File.ReadAllText(file));
            var uid = document.RootElement.GetProperty("uid").GetString();
            Assert.False(string.IsNullOrEmpty(uid), file);
            Assert.True(uids.Add(uid!), $"duplicate uid {uid}");
            foreach (var target in GrafanaQueries.Targets(document.RootElement))
            {
                Assert.Equal("prometheus", target.GetProperty("datasource").GetProperty("uid").GetString());
            }
        }
    }
}

internal static class GrafanaQueries
{
    public static IEnumerable<JsonElement> Targets(JsonElement dashboard) =>
        dashboard.GetProperty("panels").EnumerateArray()
            .Where(p => p.TryGetProperty("targets", out _))
            .SelectMany(p => p.GetProperty("targets").EnumerateArray());

    public static IEnumerable<string> Expressions(string dashboardsFolder) =>
        Directory.GetFiles(Path.Combine(dashboardsFolder, "grafana", "dashboards"), "*.json")
            .SelectMany(file =>
            {
                using var document = JsonDocument.Parse(File.ReadAllText(file));
                return Targets(document.RootElement).Select(t => t.GetProperty("expr").GetString()!).ToList();
            });
}
