using System.ComponentModel.DataAnnotations;

namespace TodoScale.Archiver.Settings;

/// <summary>How archival passes run (section <c>Archive</c>); `archive --once` options override them.</summary>
public sealed class ArchiveOptions : IValidatableObject
{
    public const string Section = "Archive";

    /// <summary>A finished todo moves once its whole subtree was finished longer ago than this.</summary>
    public TimeSpan OlderThan { get; set; } = TimeSpan.FromDays(30);

    /// <summary>AI interactions older than this move to ai_interactions_archived (weekly).</summary>
    public TimeSpan AiOlderThan { get; set; } = TimeSpan.FromDays(90);

    /// <summary>Top-level finished todos per batch; each moves with its whole subtree in the same statement.</summary>
    [Range(1, 100_000)]
    public int BatchSize { get; set; } = 5_000;

    /// <summary>Partitions worked at once, each on its own connection (default: one per core).</summary>
    [Range(1, 64)]
    public int Parallel { get; set; } = Environment.ProcessorCount;

    /// <summary>Pause after each batch, to leave the server room for user traffic.</summary>
    public TimeSpan PauseBetweenBatches { get; set; } = TimeSpan.FromMilliseconds(10);

    /// <summary>
    /// After a pass, partitions that lost (or archive months that gained) at least this many rows are analyzed, if
    /// that is also at least <see cref="AnalyzeAfterShare"/> of their rows.
    /// </summary>
    [Range(1, int.MaxValue)]
    public int AnalyzeAfterRows { get; set; } = 10_000;

    /// <summary>
    /// The share of a table's rows (its statistics' estimate before the pass) a pass must move out of it, or into an
    /// archive month, for the archiver to ANALYZE it: autovacuum's own default (autovacuum_analyze_scale_factor,
    /// 10%). Less leaves the planner's picture of the table right; the ANALYZE then only costs time (at medium scale a
    /// quarter of a pass). A table never analyzed is analyzed whatever it lost.
    /// </summary>
    [Range(0.0, 1.0)]
    public double AnalyzeAfterShare { get; set; } = 0.1;

    /// <summary>Archive months made ahead of the current one (upkeep before every pass).</summary>
    [Range(0, 36)]
    public int Premake { get; set; } = 3;

    /// <summary>The role the archiver's statements run as (BYPASSRLS: it moves every user's rows).</summary>
    public string Role { get; set; } = "todoscale_archiver";

    /// <summary>
    /// Run each batch's transaction with session_replication_role = replica, where the role may set it (migration
    /// V7 grants it): no per-row foreign key and guard triggers, a set-based check for subtasks added during the move
    /// in their place (about 4x faster per batch). False keeps the per-row triggers.
    /// </summary>
    public bool SkipRowTriggers { get; set; } = true;

    /// <summary>Daily window (UTC) in which `serve` runs its pass; equal start and end mean any time.</summary>
    public TimeOnly WindowStart { get; set; } = new(2, 0);

    public TimeOnly WindowEnd { get; set; } = new(5, 0);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (OlderThan < TimeSpan.Zero)
        {
            yield return new ValidationResult("Archive:OlderThan must not be negative.", [nameof(OlderThan)]);
        }

        if (AiOlderThan < TimeSpan.Zero)
        {
            yield return new ValidationResult("Archive:AiOlderThan must not be negative.", [nameof(AiOlderThan)]);
        }

        if (PauseBetweenBatches < TimeSpan.Zero || PauseBetweenBatches > TimeSpan.FromMinutes(1))
        {
            yield return new ValidationResult("Archive:PauseBetweenBatches must be between 0 and 1 minute.", [nameof(PauseBetweenBatches)]);
        }
    }

    /// <summary>Every problem with these options, as sentences naming the setting (empty when valid).</summary>
    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);

    /// <summary>"30d", "12h", "90m", "45s" or a TimeSpan ("30.00:00:00"); null when it is none of these.</summary>
    public static TimeSpan? ParseDuration(string text)
    {
        text = text.Trim();
        if (text.Length > 1 && double.TryParse(text[..^1], System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var amount))
        {
            TimeSpan? parsed = char.ToLowerInvariant(text[^1]) switch
            {
                'd' => TimeSpan.FromDays(amount),
                'h' => TimeSpan.FromHours(amount),
                'm' => TimeSpan.FromMinutes(amount),
                's' => TimeSpan.FromSeconds(amount),
                _ => null,
            };
            if (parsed is not null)
            {
                return parsed;
            }
        }

        return TimeSpan.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var span) ? span : null;
    }
}
