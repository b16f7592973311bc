using System.Net.Http.Json;
using System.Text.Json;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// What Alertmanager delivered to the webhook receiver (the archiver's GET /alerts, newest first, read here as plain
/// JSON), and Alertmanager's own API v2: its alerts' states, silences, and alerts posted to it directly.
/// </summary>
internal static class Deliveries
{
    /// <summary>One alert of one notification: when it arrived, to which receiver, and the alert as sent.</summary>
    public sealed record Delivery(DateTimeOffset ReceivedAt, string Receiver, JsonElement Alert)
    {
        public string Status => Alert.GetProperty("status").GetString()!;

        public string Label(string name) => Alert.GetProperty("labels").TryGetProperty(name, out var value) ? value.GetString()! : "";
    }

    /// <summary>Every delivery of <paramref name="alertName"/>, oldest first.</summary>
    public static async Task<List<Delivery>> ReadAsync(HttpClient receiver, string alertName)
    {
        using var document = JsonDocument.Parse(await receiver.GetStringAsync("/alerts"));
        return [.. document.RootElement.EnumerateArray()
            .SelectMany(n => n.GetProperty("notification").GetProperty("alerts").EnumerateArray()
                .Where(a => a.GetProperty("labels").GetProperty("alertname").GetString() == alertName)
                .Select(a => new Delivery(n.GetProperty("receivedAt").GetDateTimeOffset(), n.GetProperty("notification").GetProperty("receiver").GetString()!, a.Clone())))
            .OrderBy(d => d.ReceivedAt)];
    }

    /// <summary>Waits until <paramref name="alertName"/> has been delivered firing at least <paramref name="count"/> times.</summary>
    public static async Task<List<Delivery>> WaitAsync(HttpClient receiver, string alertName, int count, TimeSpan timeout) =>
        (await Eventually.ValueAsync(
            $"{alertName} delivered firing {count} time(s)",
            async () => new Firing([.. (await ReadAsync(receiver, alertName)).Where(d => d.Status == "firing")]),
            firing => firing.Items.Count >= count, timeout)).Items;

    /// <summary>A silence of <paramref name="alertName"/> for an hour, made through Alertmanager's API; its id.</summary>
    public static async Task<string> SilenceAsync(HttpClient alertmanager, string alertName, string comment)
    {
        var now = DateTimeOffset.UtcNow;
        using var response = await alertmanager.PostAsJsonAsync("/api/v2/silences", new
        {
            matchers = new[] { new { name = "alertname", value = alertName, isRegex = false, isEqual = true } },
            startsAt = now,
            endsAt = now.AddHours(1),
            createdBy = "TodoScale.Tests",
            comment,
        });
        response.EnsureSuccessStatusCode();
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return body.RootElement.GetProperty("silenceID").GetString()!;
    }

    /// <summary>Alertmanager's view of each alert named <paramref name="alertName"/>: its state, and what silences or inhibits it.</summary>
    public static async Task<List<(string State, string[] SilencedBy, string[] InhibitedBy)>> StatesAsync(HttpClient alertmanager, string alertName)
    {
        using var document = JsonDocument.Parse(await alertmanager.GetStringAsync(
            "/api/v2/alerts?filter=" + Uri.EscapeDataString($"alertname=\"{alertName}\"")));
        return [.. document.RootElement.EnumerateArray().Select(a => a.GetProperty("status")).Select(s => (
            s.GetProperty("state").GetString()!,
            s.GetProperty("silencedBy").EnumerateArray().Select(e => e.GetString()!).ToArray(),
            s.GetProperty("inhibitedBy").EnumerateArray().Select(e => e.GetString()!).ToArray()))];
    }

    /// <summary>Waits until Alertmanager holds <paramref name="alertName"/> in <paramref name="state"/> (and, if given, silenced by that silence).</summary>
    public static Task WaitForStateAsync(HttpClient alertmanager, string alertName, string state, string? silencedBy, TimeSpan timeout) =>
        Eventually.ValueAsync(
            $"{alertName} {state}",
            async () => new States(await StatesAsync(alertmanager, alertName)),
            seen => seen.Items.Count > 0 && seen.Items.All(s => s.State == state && (silencedBy is null || s.SilencedBy.Contains(silencedBy))),
            timeout);

    /// <summary>An alert posted straight to Alertmanager (as Prometheus does), firing for ten minutes, or resolved now.</summary>
    public static async Task PostAlertAsync(HttpClient alertmanager, string alertName, string severity, string component, bool resolved)
    {
        var now = DateTimeOffset.UtcNow;
        using var response = await alertmanager.PostAsJsonAsync("/api/v2/alerts", new[]
        {
            new
            {
                labels = new Dictionary<string, string> { ["alertname"] = alertName, ["severity"] = severity, ["component"] = component },
                annotations = new Dictionary<string, string> { ["summary"] = $"{alertName}, posted by TodoScale.Tests" },
                startsAt = now.AddMinutes(-1),
                endsAt = resolved ? now : now.AddMinutes(10),
            },
        });
        response.EnsureSuccessStatusCode();
    }

    /// <summary>Deliveries read in one poll, printed as their count when a wait gives up.</summary>
    private sealed record Firing(List<Delivery> Items)
    {
        public override string ToString() => $"{Items.Count} firing deliveries";
    }

    /// <summary>Alertmanager's states of an alert read in one poll, printed as they were when a wait gives up.</summary>
    private sealed record States(List<(string State, string[] SilencedBy, string[] InhibitedBy)> Items)
    {
        public override string ToString() =>
            Items.Count == 0 ? "no such alert" : string.Join("; ", Items.Select(s => $"{s.State} silenced by [{string.Join(",", s.SilencedBy)}] inhibited by [{string.Join(",", s.InhibitedBy)}]"));
    }
}
