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

    /// <summary>
    /// Further folders every exported month is copied to (another disk, a mounted bucket, another region), each
    /// copy verified by sha256 against the manifest; `cold restore` reads from one when the first folder's file is
    /// damaged or gone. Empty: no copies.
    /// </summary>
    public string[] ColdCopyFolders { get; set; } = [];

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

    /// <summary>
    /// How long the index statistics must have counted before an index no query scanned is reported unused
    /// (`partitions status --indexes`): a weekly job's index needs more than a day to show it is used.
    /// </summary>
    public TimeSpan UnusedIndexAfter { get; set; } = TimeSpan.FromDays(14);

    public string ColdStorageFullPath => Path.GetFullPath(ColdStorageFolder);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(ColdStorageFolder))
        {
            yield return new ValidationResult("Maintenance:ColdStorageFolder must name a folder.", [nameof(ColdStorageFolder)]);
        }

        var primary = Path.GetFullPath(string.IsNullOrWhiteSpace(ColdStorageFolder) ? "." : ColdStorageFolder).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
        foreach (var copy in ColdCopyFolders)
        {
            var full = string.IsNullOrWhiteSpace(copy) ? "" : Path.GetFullPath(copy).TrimEnd(Path.DirectorySeparatorChar) + Path.DirectorySeparatorChar;
            if (full.Length == 0 || full.StartsWith(primary, StringComparison.Ordinal) || primary.StartsWith(full, StringComparison.Ordinal))
            {
                yield return new ValidationResult(
                    $"Maintenance:ColdCopyFolders: '{copy}' must name a folder apart from Maintenance:ColdStorageFolder (not it, not inside it, not around it).",
                    [nameof(ColdCopyFolders)]);
            }
        }

        if (ColdCopyFolders.Distinct().Count() != ColdCopyFolders.Length)
        {
            yield return new ValidationResult("Maintenance:ColdCopyFolders lists a folder twice.", [nameof(ColdCopyFolders)]);
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

        if (UnusedIndexAfter < TimeSpan.Zero)
        {
            yield return new ValidationResult("Maintenance:UnusedIndexAfter must not be negative.", [nameof(UnusedIndexAfter)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
