using System.Diagnostics;
using HdrHistogram;

namespace TodoScale.Bench.Reporting;

/// <summary>Every request's latency in one HdrHistogram (nanoseconds, 3 significant digits); never an average.</summary>
public sealed class Latency
{
    private readonly LongHistogram _histogram = new(1, 120_000_000_000L, 3);

    public long Count => _histogram.TotalCount;

    public void Record(long startTimestamp) =>
        _histogram.RecordValue(Math.Max(1, (long)Stopwatch.GetElapsedTime(startTimestamp).TotalNanoseconds));

    public void RecordMicroseconds(long microseconds) => _histogram.RecordValue(Math.Max(1, microseconds * 1000));

    public void Add(Latency other) => _histogram.Add(other._histogram);

    /// <summary>The latency at a percentile, in milliseconds.</summary>
    public double Ms(double percentile) => Count == 0 ? double.NaN : _histogram.GetValueAtPercentile(percentile) / 1e6;

    public double MaxMs => Count == 0 ? double.NaN : _histogram.GetMaxValue() / 1e6;
}

/// <summary>One measured variant: its latencies, how long it ran and how many failed.</summary>
public sealed record Measured(string Variant, Latency Latency, TimeSpan Elapsed, long Errors = 0)
{
    public double PerSecond => Latency.Count / Elapsed.TotalSeconds;

    public double P50 => Latency.Ms(50);

    public double P99 => Latency.Ms(99);
}
