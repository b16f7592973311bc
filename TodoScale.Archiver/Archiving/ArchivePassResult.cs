namespace TodoScale.Archiver.Archiving;

/// <summary>One partition's share of a pass.</summary>
public sealed record PartitionResult(string Partition, int Index, long RowsMoved, long RootsMoved, int Batches, bool Skipped);

/// <summary>What a pass did.</summary>
public sealed record ArchivePassResult(IReadOnlyList<PartitionResult> Partitions, TimeSpan Elapsed, DateTimeOffset Cutoff)
{
    /// <summary>Partitions analyzed after the pass because a large share of them moved (source and archive month).</summary>
    public IReadOnlyList<string> Analyzed { get; init; } = [];

    /// <summary>The time the ANALYZEs took, summed over the workers (most of it overlaps other workers' moves).</summary>
    public TimeSpan Analyzing { get; init; }

    /// <summary>
    /// Whether the batches ran without per-row triggers (session_replication_role = replica, with the set-based
    /// orphan check in their place) or, where the archiver's role may not set that, with the triggers and guard.
    /// </summary>
    public bool RowTriggersSkipped { get; init; }

    /// <summary>
    /// The phase of a legacy migration in progress, when the pass did not run because of it: until `legacy
    /// finalize`, `todos` and the new tables are kept equal row for row, and a legacy write to a todo the archiver
    /// had moved would bring it back as a second copy.
    /// </summary>
    public string? HeldByLegacyMigration { get; init; }

    public long RowsMoved => Partitions.Sum(p => p.RowsMoved);

    public long RootsMoved => Partitions.Sum(p => p.RootsMoved);

    public int Batches => Partitions.Sum(p => p.Batches);

    public int SkippedPartitions => Partitions.Count(p => p.Skipped);
}

/// <summary>Progress of a pass, reported after every batch.</summary>
public readonly record struct ArchiveProgress(string Partition, long RowsMoved, int Batches, bool Finished);
