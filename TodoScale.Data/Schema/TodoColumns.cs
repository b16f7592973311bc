namespace TodoScale.Data.Schema;

/// <summary>
/// The column lists that SQL written in C# names on both sides of a copy or a move (never <c>SELECT *</c>: a column
/// added later must not shift data), in one place. They follow migrations V2 and V3; a test compares them with the
/// catalog.
/// </summary>
public static class TodoColumns
{
    /// <summary>
    /// A todo's columns, as todos_active has them (todos_archived adds archived_at; the original design's `todos`
    /// has the same names).
    /// </summary>
    public const string Todo =
        "id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, depth, created_at, updated_at";

    /// <summary><see cref="Todo"/> but depth, which TodoScale derives from the parent chain (what a legacy validation compares).</summary>
    public const string TodoButDepth =
        "id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, created_at, updated_at";

    /// <summary>An AI interaction's columns, as ai_interactions has them (ai_interactions_archived adds archived_at).</summary>
    public const string AiInteraction = "user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at";

    /// <summary>Each column of <paramref name="columns"/> qualified by <paramref name="alias"/> ("t.id, t.user_id, ...").</summary>
    public static string Qualified(string columns, string alias) =>
        string.Join(", ", columns.Split(", ").Select(c => alias + "." + c));
}
