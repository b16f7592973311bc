using System.Text.Json;

namespace TodoScale.Data.Entities;

/// <summary>One audit_log entry: global (not tenant data), append-only for every role but the owner.</summary>
public sealed class AuditEntry
{
    public Guid Id { get; set; } = Guid.CreateVersion7();

    public DateTimeOffset At { get; set; }

    /// <summary>user, operator or system.</summary>
    public required string ActorKind { get; set; }

    /// <summary>A user's id, or an operator's or service's name.</summary>
    public required string Actor { get; set; }

    public required string Action { get; set; }

    public string? Target { get; set; }

    public JsonDocument Details { get; set; } = JsonDocument.Parse("{}");
}
