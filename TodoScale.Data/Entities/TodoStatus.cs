namespace TodoScale.Data.Entities;

/// <summary>A todo's status; stored as text ('todo', 'in_progress', 'done', 'cancelled') under a CHECK constraint.</summary>
public enum TodoStatus
{
    Todo,
    InProgress,
    Done,
    Cancelled,
}

public static class TodoStatuses
{
    public static string ToDatabase(this TodoStatus status) => status switch
    {
        TodoStatus.Todo => "todo",
        TodoStatus.InProgress => "in_progress",
        TodoStatus.Done => "done",
        TodoStatus.Cancelled => "cancelled",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "unknown todo status"),
    };

    public static TodoStatus FromDatabase(string value) => value switch
    {
        "todo" => TodoStatus.Todo,
        "in_progress" => TodoStatus.InProgress,
        "done" => TodoStatus.Done,
        "cancelled" => TodoStatus.Cancelled,
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, "unknown todo status"),
    };

    /// <summary>Done and cancelled todos are finished: they carry completed_at and may be archived.</summary>
    public static bool IsFinished(this TodoStatus status) => status is TodoStatus.Done or TodoStatus.Cancelled;
}
