using System.ComponentModel.DataAnnotations;

namespace TodoScale.Archiver.Settings;

/// <summary>How the `legacy` verbs run (section <c>Legacy</c>).</summary>
public sealed class LegacyOptions : IValidatableObject
{
    public const string Section = "Legacy";

    /// <summary>Rows of `todos` copied per backfill batch (one transaction each).</summary>
    [Range(1, 1_000_000)]
    public int BatchSize { get; set; } = 10_000;

    /// <summary>
    /// Copy batches without per-row triggers (session_replication_role = replica, the grant of migration V7), the
    /// batch's statement checking parents, depths and projects itself: about 3.7 times faster for subtasks. Where
    /// the role may not, or with false, every row goes through TodoScale's triggers and foreign keys.
    /// </summary>
    public bool SkipRowTriggers { get; set; } = true;

    /// <summary>
    /// Backfill batches run at once, each on its own connection (one depth at a time: a depth's ranges are split
    /// among them). The default is one per CPU, as `Archive:Parallel`; lower it to leave the legacy application room.
    /// </summary>
    [Range(1, 64)]
    public int Parallel { get; set; } = Environment.ProcessorCount;

    /// <summary>The backfill's throttle: a pause after each batch, to leave the server room for the legacy application.</summary>
    public TimeSpan PauseBetweenBatches { get; set; } = TimeSpan.Zero;

    /// <summary>How long `todos` is kept after the switch, in sync, for an instant rollback; `finalize` refuses before.</summary>
    public TimeSpan RetentionWindow { get; set; } = TimeSpan.FromDays(30);

    /// <summary>The longest a DDL step (the trigger on `todos`) waits for its lock before it gives up and retries.</summary>
    public TimeSpan LockTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// The longest a backfill batch waits for a row the legacy application holds before it rolls back and retries;
    /// below deadlock_timeout, so a deadlock is always broken on the backfill's side.
    /// </summary>
    public TimeSpan BatchLockTimeout { get; set; } = TimeSpan.FromMilliseconds(250);

    /// <summary>Attempts of a DDL step that timed out waiting for its lock.</summary>
    [Range(1, 100)]
    public int LockAttempts { get; set; } = 10;

    /// <summary>User buckets `validate` compares (count and checksum each); a mismatching bucket is listed row by row.</summary>
    [Range(1, 65_536)]
    public int ValidateBuckets { get; set; } = 1_024;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (PauseBetweenBatches < TimeSpan.Zero || PauseBetweenBatches > TimeSpan.FromMinutes(1))
        {
            yield return new ValidationResult("Legacy:PauseBetweenBatches must be between 0 and 1 minute.", [nameof(PauseBetweenBatches)]);
        }

        if (RetentionWindow < TimeSpan.Zero)
        {
            yield return new ValidationResult("Legacy:RetentionWindow must not be negative.", [nameof(RetentionWindow)]);
        }

        if (BatchLockTimeout <= TimeSpan.Zero || BatchLockTimeout > TimeSpan.FromSeconds(10))
        {
            yield return new ValidationResult("Legacy:BatchLockTimeout must be between 1 ms and 10 s.", [nameof(BatchLockTimeout)]);
        }

        if (LockTimeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult("Legacy:LockTimeout must be positive.", [nameof(LockTimeout)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
