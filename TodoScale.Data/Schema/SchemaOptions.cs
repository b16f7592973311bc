using System.Globalization;
using System.Numerics;

namespace TodoScale.Data.Schema;

/// <summary>
/// Settings `migrate` applies when it creates the schema (configuration section "Schema"). The partition count and
/// depth limit are fixed at creation: later, `partitions split` changes the count, and a new migration the limit.
/// </summary>
public sealed class SchemaOptions
{
    public const string SectionName = "Schema";

    /// <summary>Hash partitions of todos_active and ai_interactions: a power of two, so re-splits double it.</summary>
    public int ActivePartitions { get; set; } = 16;

    /// <summary>How many levels of subtasks a root todo may have below it.</summary>
    public int MaxDepth { get; set; } = 5;

    /// <summary>How long `migrate` waits for another migrate to finish, and for each table lock it needs.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// When set, todoscale_app may log in with this password (the login the API uses through PgBouncer, which
    /// cannot switch roles: --Infra:Pooler=pgbouncer sets it). Unset: the role stays as it is (NOLOGIN when created).
    /// </summary>
    public string? AppLoginPassword { get; set; }

    /// <summary>The values of the ${...} placeholders in the migration scripts.</summary>
    public IReadOnlyDictionary<string, string> Placeholders => new Dictionary<string, string>
    {
        ["${active_partitions}"] = ActivePartitions.ToString(CultureInfo.InvariantCulture),
        ["${max_depth}"] = MaxDepth.ToString(CultureInfo.InvariantCulture),
    };

    /// <summary>Every invalid setting, each as a readable message; empty when the settings are valid.</summary>
    public IReadOnlyList<string> Errors()
    {
        var errors = new List<string>();
        if (ActivePartitions is < 2 or > 256 || !BitOperations.IsPow2(ActivePartitions))
        {
            errors.Add($"Schema:ActivePartitions must be a power of two from 2 to 256 (16, 32, 64...), not {ActivePartitions}.");
        }

        if (MaxDepth is < 1 or > 32)
        {
            errors.Add($"Schema:MaxDepth must be from 1 to 32, not {MaxDepth}.");
        }

        if (LockTimeout <= TimeSpan.Zero || LockTimeout > TimeSpan.FromHours(1))
        {
            errors.Add($"Schema:LockTimeout must be more than 0 and at most 01:00:00, not {LockTimeout}.");
        }

        return errors;
    }
}
