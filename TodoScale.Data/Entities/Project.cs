namespace TodoScale.Data.Entities;

/// <summary>A user's project; key (user_id, id), names unique per user.</summary>
public sealed class Project
{
    public Guid UserId { get; set; }

    public Guid Id { get; set; }

    public required string Name { get; set; }

    public DateTimeOffset CreatedAt { get; set; }

    /// <summary>Set by the database on insert and on every update.</summary>
    public DateTimeOffset UpdatedAt { get; set; }
}
