using System.ComponentModel.DataAnnotations;
using System.IO.Compression;

namespace TodoScale.Archiver.Settings;

/// <summary>Upkeep, retention to cold storage and reindexing (section <c>Maintenance</c>).</summary>
public sealed class MaintenanceOptions : IValidatableObject
{
    public const string Section = "Maintenance";

    /// <summary>Archive months older than this many months (before the current one) go to cold storage.</summary>
    [Range(1, 1200)]
    public int RetentionMonths { get; set; } = 24;

    /// <summary>Where exported months are written, one folder per month with its manifest (relative: to the working directory).</summary>
    public string ColdStorageFolder { get; set; } = "cold-storage";

    /// <summary>gzip level of the exported files: Optimal, SmallestSize or Fastest.</summary>
    public CompressionLevel Compression { get; set; } = CompressionLevel.SmallestSize;

    /// <summary>An index whose leaf pages are this much emptier than its fillfactor is rebuilt (REINDEX CONCURRENTLY).</summary>
    [Range(1, 99)]
    public int ReindexBloatPercent { get; set; } = 30;

    /// <summary>Indexes smaller than this are never measured or rebuilt.</summary>
    [Range(0, long.MaxValue)]
    public long ReindexMinBytes { get; set; } = 1024 * 1024;

    /// <summary>How often `serve` measures index bloat and reindexes.</summary>
    public TimeSpan ReindexEvery { get; set; } = TimeSpan.FromDays(7);

    /// <summary>How long detach, attach and drop wait for a table lock before giving up (the operation is retried next run).</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>How often `serve` refreshes the partition, archive-month and cold-storage gauges.</summary>
    public TimeSpan StatsInterval { get; set; } = TimeSpan.FromSeconds(30);

    public string ColdStorageFullPath => Path.GetFullPath(ColdStorageFolder);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(ColdStorageFolder))
        {
            yield return new ValidationResult("Maintenance:ColdStorageFolder must name a folder.", [nameof(ColdStorageFolder)]);
        }

        if (!Enum.IsDefined(Compression) || Compression == CompressionLevel.NoCompression)
        {
            yield return new ValidationResult("Maintenance:Compression must be Optimal, SmallestSize or Fastest.", [nameof(Compression)]);
        }

        if (LockTimeout <= TimeSpan.Zero || LockTimeout > TimeSpan.FromMinutes(10))
        {
            yield return new ValidationResult("Maintenance:LockTimeout must be between 0 and 10 minutes.", [nameof(LockTimeout)]);
        }

        if (ReindexEvery < TimeSpan.FromHours(1))
        {
            yield return new ValidationResult("Maintenance:ReindexEvery must be at least 1 hour.", [nameof(ReindexEvery)]);
        }

        if (StatsInterval < TimeSpan.FromSeconds(1))
        {
            yield return new ValidationResult("Maintenance:StatsInterval must be at least 1 second.", [nameof(StatsInterval)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
