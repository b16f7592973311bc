namespace TodoScale.Data.Entities;

/// <summary>The columns an active and an archived AI interaction share.</summary>
public abstract class AiInteractionColumns
{
    public Guid UserId { get; set; }

    public Guid Id { get; set; }

    public Guid TodoId { get; set; }

    /// <summary>What was asked, in lower snake case: generate_subtasks, summarize, ...</summary>
    public required string Kind { get; set; }

    public required string Model { get; set; }

    public required string Prompt { get; set; }

    public string? Response { get; set; }

    public int TokensIn { get; set; }

    public int TokensOut { get; set; }

    public int LatencyMs { get; set; }

    public DateTimeOffset CreatedAt { get; set; }
}

/// <summary>An AI interaction in ai_interactions, hash-partitioned by user; key (user_id, id).</summary>
public sealed class AiInteraction : AiInteractionColumns;

/// <summary>An AI interaction moved to ai_interactions_archived (monthly); key (user_id, id, archived_at).</summary>
public sealed class ArchivedAiInteraction : AiInteractionColumns
{
    public DateTimeOffset ArchivedAt { get; set; }
}
