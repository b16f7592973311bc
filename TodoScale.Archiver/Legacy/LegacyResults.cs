namespace TodoScale.Archiver.Legacy;

/// <summary>The row of legacy_migration: where the migration stands.</summary>
public sealed record LegacyState(
    string Phase, DateTimeOffset StartedAt, short? BackfillDepth, Guid? BackfillId, long BackfillRows,
    DateTimeOffset? BackfilledAt, DateTimeOffset? ValidatedAt, DateTimeOffset? SwitchedAt, DateTimeOffset? RolledBackAt,
    DateTimeOffset? FinalizedAt);

/// <summary>A verb refused: asked for at the wrong moment, or on a `todos` it cannot take; nothing was changed.</summary>
public sealed class LegacyOrderException(string message) : Exception(message);

/// <summary>Backfill progress, after every batch: rows of `todos` read so far, of about <see cref="Total"/>.</summary>
public readonly record struct BackfillProgress(long Read, long Total);

/// <summary>
/// A backfill's run: every row read is taken (copied now, or earlier: by the trigger, a previous run, or as an
/// ancestor of a row read before it) or rejected, so Scanned - Rejected rows are taken; Copied counts the rows this
/// run inserted (the ancestors it copied ahead included). <see cref="RetriedRejects"/>: a run once backfilled, which
/// read only the rows in legacy_rejects again.
/// </summary>
public sealed record BackfillResult(
    long Scanned, long Copied, long Rejected, int Batches, TimeSpan Elapsed, long TotalCopied, bool AlreadyDone, bool RowTriggersSkipped = false,
    int Parallel = 1, bool RetriedRejects = false);

/// <summary>One row the two sides disagree on; <see cref="Reason"/> (legacy_rejects.reason) and <see cref="Message"/> when the row is rejected.</summary>
public sealed record Mismatch(Guid UserId, Guid Id, string Kind, string? Reason, string? Message = null)
{
    public const string OnlyInTodoScale = "only in TodoScale";
}

/// <summary>
/// What `legacy validate` found. Every row of `todos` checked is taken (equal on both sides as the rules make it),
/// rejected (a mismatch with a reason) or another mismatch: <see cref="LegacyRows"/> = <see cref="Taken"/> +
/// <see cref="Rejected"/> + <see cref="Unexplained"/>.
/// </summary>
public sealed record LegacyValidation(
    int Buckets, int BucketsChecked, long LegacyRows, long TodoScaleRows, IReadOnlyList<Mismatch> Mismatches, TimeSpan Elapsed, bool Sample)
{
    public long Rejected => Mismatches.Count(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is not null);

    public long Unexplained => Mismatches.Count(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is null);

    public long Taken => LegacyRows - Rejected - Unexplained;

    /// <summary>The rejected rows by reason, most first.</summary>
    public IReadOnlyList<(string Reason, int Rows)> RejectedByReason =>
        Mismatches.Where(m => m.Kind != Mismatch.OnlyInTodoScale && m.Reason is not null)
            .GroupBy(m => m.Reason!).Select(g => (g.Key, g.Count())).OrderByDescending(g => g.Item2).ThenBy(g => g.Key, StringComparer.Ordinal).ToList();
}

/// <summary>What `legacy status` shows.</summary>
public sealed record LegacyStatus(
    bool LegacyTableExists, LegacyState? State, long LegacyRows, long ActiveRows, long ArchivedRows, long Rejects,
    bool ForwardTrigger, bool ReverseTrigger, TimeSpan RetentionWindow);
