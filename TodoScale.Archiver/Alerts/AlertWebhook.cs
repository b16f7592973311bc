using System.Collections.Concurrent;
using System.ComponentModel.DataAnnotations;
using System.Text.Json.Serialization;

namespace TodoScale.Archiver.Alerts;

/// <summary>One alert of a notification, as Alertmanager's webhook (payload version 4) sends it.</summary>
public sealed record WebhookAlert(
    [property: Required] string Status,
    [property: Required] Dictionary<string, string> Labels,
    Dictionary<string, string>? Annotations,
    DateTimeOffset StartsAt,
    DateTimeOffset EndsAt,
    string? GeneratorURL,
    string? Fingerprint)
{
    [JsonIgnore]
    public string Name => Labels.GetValueOrDefault("alertname", "?");

    public string? Annotation(string name) => Annotations?.GetValueOrDefault(name);
}

/// <summary>A notification Alertmanager posted: one group of alerts sent to one receiver.</summary>
public sealed record WebhookNotification(
    [property: Required] string Version,
    string? GroupKey,
    [property: Required] string Status,
    [property: Required] string Receiver,
    Dictionary<string, string>? GroupLabels,
    Dictionary<string, string>? CommonLabels,
    Dictionary<string, string>? CommonAnnotations,
    string? ExternalURL,
    [property: Required] List<WebhookAlert> Alerts);

/// <summary>A notification as received, with when.</summary>
public sealed record ReceivedNotification(DateTimeOffset ReceivedAt, WebhookNotification Notification);

/// <summary>The last notifications received, newest first; a bounded list, kept in memory.</summary>
public sealed class AlertInbox
{
    public const int Capacity = 200;

    private readonly ConcurrentQueue<ReceivedNotification> _received = new();

    public void Add(ReceivedNotification notification)
    {
        _received.Enqueue(notification);
        while (_received.Count > Capacity && _received.TryDequeue(out _))
        {
        }
    }

    public IReadOnlyList<ReceivedNotification> Newest() => [.. _received.Reverse()];
}

/// <summary>
/// The local destination of TodoScale's alerts (dashboards/alertmanager/alertmanager.yml): Alertmanager's webhook
/// posts each notification to POST /alerts, which writes every alert of it to the archiver's log (firing as a
/// warning, resolved as information: the Aspire dashboard's structured logs show them with their labels) and keeps
/// the last <see cref="AlertInbox.Capacity"/> notifications for GET /alerts. Like /archive/run, internal: the
/// archiver is not exposed to users.
/// </summary>
public static partial class AlertWebhook
{
    public static IServiceCollection AddAlertWebhook(this IServiceCollection services) =>
        services.AddSingleton<AlertInbox>().AddProblemDetails();

    public static IEndpointRouteBuilder MapAlertWebhook(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapPost("/alerts", (WebhookNotification notification, AlertInbox inbox, TimeProvider clock, ILoggerFactory loggers) =>
        {
            if (notification.Version != "4")
            {
                return Results.Problem(
                    statusCode: StatusCodes.Status400BadRequest, title: "Unsupported webhook payload",
                    detail: $"This receiver reads Alertmanager's webhook payload version 4, not '{notification.Version}'.");
            }

            var logger = loggers.CreateLogger("TodoScale.Alerts");
            foreach (var alert in notification.Alerts)
            {
                var labels = string.Join(", ", alert.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"));
                if (alert.Status == "resolved")
                {
                    AlertResolved(logger, alert.Name, notification.Receiver, alert.Annotation("summary"), labels, alert.StartsAt, alert.EndsAt);
                }
                else
                {
                    AlertFiring(logger, alert.Name, notification.Receiver, alert.Annotation("summary"), alert.Annotation("runbook_url"), labels, alert.StartsAt);
                }
            }

            inbox.Add(new ReceivedNotification(clock.GetUtcNow(), notification));
            return Results.Ok(new { received = notification.Alerts.Count });
        }).WithValidation();

        endpoints.MapGet("/alerts", (AlertInbox inbox) => Results.Ok(inbox.Newest()));
        return endpoints;
    }

    private static RouteHandlerBuilder WithValidation(this RouteHandlerBuilder builder) =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var notification = context.Arguments.OfType<WebhookNotification>().Single();
            var errors = new List<ValidationResult>();
            var valid = Validator.TryValidateObject(notification, new ValidationContext(notification), errors, validateAllProperties: true)
                && notification.Alerts.All(a => Validator.TryValidateObject(a, new ValidationContext(a), errors, validateAllProperties: true));
            return valid
                ? await next(context)
                : Results.ValidationProblem(errors
                    .SelectMany(e => e.MemberNames.DefaultIfEmpty(""), (e, member) => (Member: member, Message: e.ErrorMessage ?? "invalid"))
                    .GroupBy(e => e.Member)
                    .ToDictionary(g => g.Key, g => g.Select(e => e.Message).ToArray()));
        });

    [LoggerMessage(LogLevel.Warning, "Alert firing: {AlertName} to {Receiver}: {Summary} (runbook {RunbookUrl}; {Labels}; since {StartsAt:u})")]
    private static partial void AlertFiring(ILogger logger, string alertName, string receiver, string? summary, string? runbookUrl, string labels, DateTimeOffset startsAt);

    [LoggerMessage(LogLevel.Information, "Alert resolved: {AlertName} to {Receiver}: {Summary} ({Labels}; {StartsAt:u} to {EndsAt:u})")]
    private static partial void AlertResolved(ILogger logger, string alertName, string receiver, string? summary, string labels, DateTimeOffset startsAt, DateTimeOffset endsAt);
}
