using System.ComponentModel.DataAnnotations;

namespace TodoScale.Archiver.Settings;

/// <summary>How `partitions split` runs (section <c>Split</c>).</summary>
public sealed class SplitOptions : IValidatableObject
{
    public const string Section = "Split";

    /// <summary>Rows of the old partition copied per batch (one transaction each, holding share locks on those rows).</summary>
    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 5_000;

    /// <summary>The copy's throttle: a pause after each batch, to leave the server room for the application.</summary>
    public TimeSpan PauseBetweenBatches { get; set; } = TimeSpan.Zero;

    /// <summary>
    /// The longest a step that takes a strong lock (the mirror trigger, the new foreign keys, the swap) waits for it
    /// before it rolls back and retries. While it waits, the application's statements on the table queue behind it:
    /// this plus the swap's few milliseconds is the longest a write can be blocked.
    /// </summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Attempts of a lock-bound step before the split stops (a rerun resumes where it stopped).</summary>
    [Range(1, 1_000)]
    public int LockAttempts { get; set; } = 50;

    /// <summary>The longest a copy batch waits for a row the application holds before it rolls back and retries.</summary>
    public TimeSpan BatchLockTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PauseBetweenBatches < TimeSpan.Zero || PauseBetweenBatches > TimeSpan.FromMinutes(1))
        {
            yield return new ValidationResult("Split:PauseBetweenBatches must be between 0 and 1 minute.", [nameof(PauseBetweenBatches)]);
        }

        if (LockTimeout <= TimeSpan.Zero || LockTimeout > TimeSpan.FromSeconds(10))
        {
            yield return new ValidationResult("Split:LockTimeout must be between 1 ms and 10 s.", [nameof(LockTimeout)]);
        }

        if (BatchLockTimeout <= TimeSpan.Zero || BatchLockTimeout > TimeSpan.FromSeconds(10))
        {
            yield return new ValidationResult("Split:BatchLockTimeout must be between 1 ms and 10 s.", [nameof(BatchLockTimeout)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
