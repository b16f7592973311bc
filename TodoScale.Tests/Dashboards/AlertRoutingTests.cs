using System.Text.Json;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Dashboards;

/// <summary>
/// The stack's Alertmanager as it runs, in both modes: Prometheus sends to it, it runs dashboards/alertmanager's
/// routing with the archiver's webhook as the receiver (in container mode: a container reaching the archiver on the
/// host), routes by severity and mutes a component's warnings while a critical of that component fires. Alerts are
/// posted to its API as Prometheus posts them, named uniquely.
/// </summary>
public abstract class AlertRoutingTests(AppHostFixture fixture, ITestOutputHelper output)
{
    [Fact]
    public async Task Prometheus_sends_to_alertmanager_which_runs_the_routing_file_with_the_archivers_webhook()
    {
        using var prometheus = fixture.App.CreateHttpClient("prometheus", "http");
        using var alertmanager = fixture.App.CreateHttpClient("alertmanager", "http");
        var archiver = fixture.App.GetEndpoint("archiver", "http");

        using var targets = JsonDocument.Parse(await prometheus.GetStringAsync("/api/v1/alertmanagers"));
        var active = targets.RootElement.GetProperty("data").GetProperty("activeAlertmanagers").EnumerateArray()
            .Select(a => new Uri(a.GetProperty("url").GetString()!)).ToList();
        output.WriteLine($"Prometheus sends to {string.Join(", ", active)}");
        // Process mode: the port Aspire gave Alertmanager; container mode: the container's own port, by name.
        Assert.Equal([fixture.ContainerMode ? 9093 : alertmanager.BaseAddress!.Port], active.Select(u => u.Port));

        using var status = JsonDocument.Parse(await alertmanager.GetStringAsync("/api/v2/status"));
        var config = status.RootElement.GetProperty("config").GetProperty("original").GetString()!;
        output.WriteLine(config);
        Assert.DoesNotContain("todoscale-alert-receiver", config);
        var receivers = System.Text.RegularExpressions.Regex.Matches(config, @"url: (http://\S+/alerts)").Select(m => new Uri(m.Groups[1].Value)).ToList();
        Assert.Equal(2, receivers.Count); // critical and warning, both the webhook here
        if (!fixture.ContainerMode)
        {
            // In container mode the address is the one the container reaches the host by (Aspire's tunnel, or the
            // engine's host name); the delivery test below shows it arrives.
            Assert.All(receivers, url => Assert.Equal($"http://{archiver.Host}:{archiver.Port}/alerts", url.ToString()));
        }
        Assert.Contains("group_wait: 1s", config); // Infra:AlertRepeatInterval, as the tests run
        Assert.Equal("disabled", status.RootElement.GetProperty("cluster").GetProperty("status").GetString()); // one instance, no gossip port
    }

    [Fact]
    public async Task A_critical_mutes_its_components_warnings_and_each_severity_reaches_its_receiver()
    {
        var id = Guid.NewGuid().ToString("N")[..8];
        var (critical, muted, other) = ($"TodoScaleRoutingCritical{id}", $"TodoScaleRoutingMuted{id}", $"TodoScaleRoutingOther{id}");
        using var alertmanager = fixture.App.CreateHttpClient("alertmanager", "http");
        using var receiver = fixture.App.CreateHttpClient("archiver", "http");
        try
        {
            await Deliveries.PostAlertAsync(alertmanager, critical, "critical", $"routing-{id}", resolved: false);
            await Deliveries.PostAlertAsync(alertmanager, muted, "warning", $"routing-{id}", resolved: false);
            await Deliveries.PostAlertAsync(alertmanager, other, "warning", $"elsewhere-{id}", resolved: false);

            await Deliveries.WaitForStateAsync(alertmanager, muted, "suppressed", silencedBy: null, TimeSpan.FromSeconds(30));
            Assert.NotEmpty((await Deliveries.StatesAsync(alertmanager, muted)).Single().InhibitedBy);

            var criticals = await Deliveries.WaitAsync(receiver, critical, count: 1, TimeSpan.FromSeconds(60));
            Assert.All(criticals, d => Assert.Equal("todoscale-critical", d.Receiver));
            // The other component's warning, delivered three times (two repeat intervals): the muted one never.
            var others = await Deliveries.WaitAsync(receiver, other, count: 3, TimeSpan.FromSeconds(60));
            Assert.All(others, d => Assert.Equal("todoscale-warning", d.Receiver));
            Assert.Empty(await Deliveries.ReadAsync(receiver, muted));
            output.WriteLine($"{critical}: {criticals.Count} to todoscale-critical; {other}: {others.Count} to todoscale-warning; {muted}: none (inhibited)");
        }
        finally
        {
            foreach (var (name, severity, component) in new[] { (critical, "critical", $"routing-{id}"), (muted, "warning", $"routing-{id}"), (other, "warning", $"elsewhere-{id}") })
            {
                await Deliveries.PostAlertAsync(alertmanager, name, severity, component, resolved: true);
            }
        }
    }

    [Fact]
    public async Task The_webhook_receiver_refuses_what_is_not_an_alertmanager_notification()
    {
        using var receiver = fixture.App.CreateHttpClient("archiver", "http");
        foreach (var body in new[] { "{", "{\"version\":\"4\"}", "{\"version\":\"3\",\"status\":\"firing\",\"receiver\":\"x\",\"alerts\":[]}" })
        {
            using var response = await receiver.PostAsync("/alerts", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
            Assert.Equal(System.Net.HttpStatusCode.BadRequest, response.StatusCode);
            Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        }
    }
}

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class AlertRoutingTestsInProcessMode(AppHostFixture fixture, ITestOutputHelper output) : AlertRoutingTests(fixture, output);

[Trait(Traits.Needs, Traits.AppHost)]
[Collection(ContainerAppHostCollection.Name)]
[NeedsContainerEngine]
public sealed class AlertRoutingTestsInContainerMode(ContainerAppHostFixture fixture, ITestOutputHelper output) : AlertRoutingTests(fixture, output);
