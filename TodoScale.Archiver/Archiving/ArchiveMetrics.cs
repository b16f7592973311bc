using System.Diagnostics;
using System.Diagnostics.Metrics;
using TodoScale.ServiceDefaults;

namespace TodoScale.Archiver.Archiving;

/// <summary>The TodoScale.Archiver meter: what archival passes move, how long they take, when one last succeeded.</summary>
public sealed class ArchiveMetrics
{
    public const string RowsMoved = "todoscale.archive.rows_moved";
    public const string Batches = "todoscale.archive.batches";
    public const string BatchDuration = "todoscale.archive.batch.duration";
    public const string PassDuration = "todoscale.archive.pass.duration";
    public const string LastSuccess = "todoscale.archive.last_success";
    public const string Failures = "todoscale.archive.failures";

    public static class Tags
    {
        public const string Partition = "partition";
        public const string Table = "table";
    }

    private readonly Counter<long> _rowsMoved;
    private readonly Counter<long> _batches;
    private readonly Histogram<double> _batchDuration;
    private readonly Histogram<double> _passDuration;
    private readonly Counter<long> _failures;
    private readonly Dictionary<string, double> _lastSuccess = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public ArchiveMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(TodoScaleMeters.Archiver);
        _rowsMoved = meter.CreateCounter<long>(RowsMoved, "{row}", "Rows moved from an active table to its archive, by source partition.");
        _batches = meter.CreateCounter<long>(Batches, "{batch}", "Archive batches (one statement each) committed.");
        _batchDuration = meter.CreateHistogram(BatchDuration, "s", "Time of one archive batch.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30] });
        _passDuration = meter.CreateHistogram(PassDuration, "s", "Time of one archival pass over every partition.", null,
            new InstrumentAdvice<double> { HistogramBucketBoundaries = [0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200] });
        _failures = meter.CreateCounter<long>(Failures, "{pass}", "Archival passes that failed.");
        meter.CreateObservableGauge(LastSuccess, ObserveLastSuccess, "s", "Unix time of the last successful pass, per table.");
    }

    public void BatchMoved(string table, int partition, long rows, TimeSpan elapsed)
    {
        var tags = new TagList { { Tags.Table, table }, { Tags.Partition, partition.ToString("00", System.Globalization.CultureInfo.InvariantCulture) } };
        _rowsMoved.Add(rows, tags);
        _batches.Add(1, tags);
        _batchDuration.Record(elapsed.TotalSeconds, tags);
    }

    public void PassSucceeded(string table, TimeSpan elapsed, DateTimeOffset at)
    {
        _passDuration.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>(Tags.Table, table));
        lock (_gate)
        {
            _lastSuccess[table] = at.ToUnixTimeMilliseconds() / 1000.0;
        }
    }

    public void PassFailed(string table) => _failures.Add(1, new KeyValuePair<string, object?>(Tags.Table, table));

    private IEnumerable<Measurement<double>> ObserveLastSuccess()
    {
        lock (_gate)
        {
            return _lastSuccess.Select(e => new Measurement<double>(e.Value, new KeyValuePair<string, object?>(Tags.Table, e.Key))).ToList();
        }
    }
}
