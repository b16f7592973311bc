namespace TodoScale.Data.Entities;

/// <summary>The columns an active and an archived todo share (todos_active, todos_archived).</summary>
public abstract class TodoColumns
{
    public Guid Id { get; set; }

    public Guid UserId { get; set; }

    public Guid? ParentTodoId { get; set; }

    public Guid? ProjectId { get; set; }

    public required string Title { get; set; }

    public string? Description { get; set; }

    public TodoStatus Status { get; set; }

    /// <summary>1 (most urgent) .. 5; 3 when not given.</summary>
    public short Priority { get; set; } = 3;

    public DateTimeOffset? DueDate { get; set; }

    /// <summary>Set exactly when the status is done or cancelled (a CHECK constraint holds the two together).</summary>
    public DateTimeOffset? CompletedAt { get; set; }

    public bool AiGenerated { get; set; }

    /// <summary>0 for a root, the parent's depth + 1 for a subtask: computed by the database on every write.</summary>
    public short Depth { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>Set by the database on insert and on every update.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}

/// <summary>A todo in todos_active, hash-partitioned by user; key (user_id, id).</summary>
public sealed class Todo : TodoColumns;

/// <summary>A todo moved to todos_archived by the archiver, partitioned by month of archived_at; key (user_id, id, archived_at).</summary>
public sealed class ArchivedTodo : TodoColumns
{
    public DateTimeOffset ArchivedAt { get; set; }
}
