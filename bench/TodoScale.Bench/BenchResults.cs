using TodoScale.Bench.Data;
using TodoScale.Bench.Reporting;
using TodoScale.Bench.Workloads;

namespace TodoScale.Bench;

/// <summary>Everything one run measured, for the report.</summary>
public sealed class BenchResults
{
    public required BenchScale Scale { get; init; }

    public required string Command { get; init; }

    public required int Seed { get; init; }

    public DateTimeOffset Started { get; } = DateTimeOffset.UtcNow;

    public TimeSpan Elapsed { get; set; }

    public Dictionary<string, string> Server { get; } = [];

    public Generated? Generated { get; set; }

    public TimeSpan BaselinesBuilt { get; set; }

    public int LoadedUsers { get; set; }

    public int HeavyUsers { get; set; }

    public long HeaviestOpenTodos { get; set; }

    public List<Measured> PageTypical { get; } = [];

    public List<Measured> PageHeavy { get; } = [];

    public Measured? BeforeTypical { get; set; }

    public List<(string What, string Plan)> Plans { get; } = [];

    public Measured? RawLoop { get; set; }

    public WrkResult? ApiUncached { get; set; }

    public WrkResult? ApiCached { get; set; }

    /// <summary>The peer API (bench/TodoScale.Bench.Peer) under the uncached API's load.</summary>
    public WrkResult? PeerApi { get; set; }

    /// <summary>Every round's peer run (<see cref="PeerApi"/> is the median).</summary>
    public List<WrkResult> PeerRuns { get; } = [];

    public List<WrkResult> MetersOn { get; } = [];

    public List<WrkResult> MetersOff { get; } = [];

    public Measured? ApiIdle { get; set; }

    public Measured? ApiDuringArchive { get; set; }

    /// <summary>The pass on its own (the older half of what waits: finished 45 to 60 days ago).</summary>
    public ArchiveResult? Archive { get; set; }

    /// <summary>The rows of <see cref="Archive"/> put back and moved again by a bare set-based move.</summary>
    public BareMoveResult? BareMove { get; set; }

    /// <summary>The pass while the API serves a steady load (the rest: finished 30 to 45 days ago).</summary>
    public ArchiveResult? ArchiveUnderLoad { get; set; }

    public List<(long Rows, double P50, double P99)> Curve { get; } = [];

    public BigTableResult? BigTable { get; set; }

    /// <summary>What `partitions status --indexes --unused-after 0s` printed at the end of the run.</summary>
    public string? IndexReport { get; set; }
}
