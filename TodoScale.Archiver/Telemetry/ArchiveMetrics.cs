using System.Diagnostics;
using System.Diagnostics.Metrics;
using TodoScale.ServiceDefaults;

namespace TodoScale.Archiver.Telemetry;

/// <summary>
/// The TodoScale.Archiver meter: what archival passes move, how long they take, when one last succeeded; the
/// size of every partition and archive month and the archive backlog (from the latest <see cref="PartitionSnapshot"/>,
/// refreshed on an interval by <see cref="PartitionStatsCollector"/>); cold storage.
/// </summary>
public sealed class ArchiveMetrics
{
    public const string RowsMoved = "todoscale.archive.rows_moved";
    public const string Batches = "todoscale.archive.batches";
    public const string BatchDuration = "todoscale.archive.batch.duration";
    public const string PassDuration = "todoscale.archive.pass.duration";
    public const string LastSuccess = "todoscale.archive.last_success";
    public const string Failures = "todoscale.archive.failures";
    public const string Backlog = "todoscale.archive.backlog";
    public const string MonthsAhead = "todoscale.archive.months_ahead";
    public const string PartitionRows = "todoscale.partition.rows";
    public const string PartitionSize = "todoscale.partition.size";
    public const string PartitionUsers = "todoscale.partition.users";
    public const string MonthRows = "todoscale.archive.month.rows";
    public const string MonthSize = "todoscale.archive.month.size";
    public const string MonthUsers = "todoscale.archive.month.users";
    public const string StatsAge = "todoscale.partition.stats.refreshed";
    public const string ColdMonths = "todoscale.cold.months";
    public const string ColdSize = "todoscale.cold.size";
    public const string ColdPartitionSize = "todoscale.cold.partition_size";
    public const string ColdCompressionRatio = "todoscale.cold.compression_ratio";
    public const string ColdFailures = "todoscale.cold.failures";
    public const string ColdCopies = "todoscale.cold.copies";

    public static class Tags
    {
        public const string Partition = "partition";
        public const string Table = "table";
        public const string Month = "month";
        public const string Operation = "operation";
    }

    private readonly Counter<long> _rowsMoved;
    private readonly Counter<long> _batches;
    private readonly Histogram<double> _batchDuration;
    private readonly Histogram<double> _passDuration;
    private readonly Counter<long> _failures;
    private readonly Dictionary<string, double> _lastSuccess = new(StringComparer.Ordinal);
    private readonly Counter<long> _coldFailures;
    private readonly Lock _gate = new();
    private PartitionSnapshot? _snapshot;
    private IReadOnlyList<ColdMonthSize> _cold = [];
    // Zero of each state until a check of the copies reports (none is made without Maintenance:ColdCopyFolders).
    private IReadOnlyDictionary<string, int> _copies = new Dictionary<string, int>(StringComparer.Ordinal) { ["ok"] = 0, ["missing"] = 0, ["damaged"] = 0 };

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

        meter.CreateObservableGauge(PartitionRows, () => Active(p => p.Rows), "{row}", "Live rows per partition of todos_active and ai_interactions (statistics' estimate).");
        meter.CreateObservableGauge(PartitionSize, () => Active(p => p.Bytes), "By", "Size on disk per partition (table, indexes, TOAST).");
        meter.CreateObservableGauge(PartitionUsers, () => Active(p => p.Users), "{user}", "Distinct users per partition (estimate).");
        meter.CreateObservableGauge(Backlog, () => Active(p => p.Waiting), "{row}", "Rows finished before the archive cut-off and not yet archived, per partition.");
        meter.CreateObservableGauge(MonthRows, () => Months(p => p.Rows), "{row}", "Rows per archive month.");
        meter.CreateObservableGauge(MonthSize, () => Months(p => p.Bytes), "By", "Size on disk per archive month.");
        meter.CreateObservableGauge(MonthUsers, () => Months(p => p.Users), "{user}", "Distinct users per archive month (estimate).");
        meter.CreateObservableGauge(MonthsAhead, ObserveMonthsAhead, "{month}", "Archive months that exist after the current one (upkeep makes Premake of them).");
        meter.CreateObservableGauge(StatsAge, ObserveStatsTime, "s", "Unix time the partition gauges were last read from the database.");
        meter.CreateObservableGauge(ColdMonths, () => Cold(m => 1), "{month}", "Months exported to cold storage.");
        meter.CreateObservableGauge(ColdSize, () => Cold(m => m.FileBytes), "By", "Bytes of the exported (compressed) files in cold storage.");
        meter.CreateObservableGauge(ColdPartitionSize, () => Cold(m => m.PartitionBytes), "By", "Size on disk the exported partitions had.");
        meter.CreateObservableGauge(ColdCompressionRatio, ObserveColdRatio, "1", "Size on disk of the exported partitions over the size of their files.");
        meter.CreateObservableGauge(ColdCopies, ObserveCopies, "{copy}",
            "Exported months in the copy folders (Maintenance:ColdCopyFolders) by state at the last check: ok, missing, damaged (after repair).");
        _coldFailures = meter.CreateCounter<long>(ColdFailures, "{operation}", "Cold-storage exports, drops and restores that failed (the partition is kept).");

        // Failure counters exist from the start at 0, so rate() and increase() see the first failure.
        foreach (var table in new[] { "todos", "ai_interactions" })
        {
            _failures.Add(0, new KeyValuePair<string, object?>(Tags.Table, table));
        }

        foreach (var operation in new[] { "export", "copy", "drop", "restore" })
        {
            _coldFailures.Add(0, new KeyValuePair<string, object?>(Tags.Operation, operation));
        }
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

    /// <summary>The latest partition sizes (from <see cref="PartitionStatsCollector"/>) and cold-storage manifests.</summary>
    public void Observe(PartitionSnapshot snapshot, IReadOnlyList<ColdMonthSize> cold)
    {
        lock (_gate)
        {
            _snapshot = snapshot;
            _cold = cold;
        }
    }

    public void ColdExported(ColdMonthSize month)
    {
        lock (_gate)
        {
            _cold = [.. _cold.Where(m => m.Month != month.Month), month];
        }
    }

    /// <summary>The copies as the last check (upkeep, `cold verify` in this process) found them, counted by state.</summary>
    public void ObserveCopies(IReadOnlyList<string> states)
    {
        var counts = new[] { "ok", "missing", "damaged" }.ToDictionary(s => s, s => states.Count(c => c == s), StringComparer.Ordinal);
        lock (_gate)
        {
            _copies = counts;
        }
    }

    private IEnumerable<Measurement<int>> ObserveCopies()
    {
        IReadOnlyDictionary<string, int> copies;
        lock (_gate)
        {
            copies = _copies;
        }

        return copies.Select(c => new Measurement<int>(c.Value, new KeyValuePair<string, object?>("state", c.Key)));
    }

    public void ColdFailed(string operation) => _coldFailures.Add(1, new KeyValuePair<string, object?>(Tags.Operation, operation));

    /// <summary>The last success recorded before this process started (from audit_log), until a pass here replaces it.</summary>
    public void RestoreLastSuccess(string table, DateTimeOffset at)
    {
        lock (_gate)
        {
            _lastSuccess.TryAdd(table, at.ToUnixTimeMilliseconds() / 1000.0);
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

    private IEnumerable<Measurement<long>> Active(Func<PartitionStat, long?> value)
    {
        lock (_gate)
        {
            return _snapshot is null ? [] : [.. _snapshot.Active.Where(p => value(p).HasValue).Select(p => new Measurement<long>(
                value(p)!.Value, new KeyValuePair<string, object?>(Tags.Table, p.Table), new KeyValuePair<string, object?>(Tags.Partition, p.Key)))];
        }
    }

    private IEnumerable<Measurement<long>> Months(Func<PartitionStat, long?> value)
    {
        lock (_gate)
        {
            return _snapshot is null ? [] : [.. _snapshot.ArchiveMonths.Where(p => value(p).HasValue).Select(p => new Measurement<long>(
                value(p)!.Value, new KeyValuePair<string, object?>(Tags.Table, p.Table), new KeyValuePair<string, object?>(Tags.Month, p.Key)))];
        }
    }

    private IEnumerable<Measurement<int>> ObserveMonthsAhead()
    {
        lock (_gate)
        {
            return _snapshot is null ? [] : [new Measurement<int>(_snapshot.MonthsAhead, new KeyValuePair<string, object?>(Tags.Table, "todos_archived"))];
        }
    }

    private IEnumerable<Measurement<double>> ObserveStatsTime()
    {
        lock (_gate)
        {
            return _snapshot is null ? [] : [new Measurement<double>(_snapshot.At.ToUnixTimeMilliseconds() / 1000.0)];
        }
    }

    private IEnumerable<Measurement<long>> Cold(Func<ColdMonthSize, long> value)
    {
        lock (_gate)
        {
            return _snapshot is null && _cold.Count == 0 ? [] : [new Measurement<long>(_cold.Sum(value))];
        }
    }

    private IEnumerable<Measurement<double>> ObserveColdRatio()
    {
        lock (_gate)
        {
            var files = _cold.Sum(m => m.FileBytes);
            return files == 0 ? [] : [new Measurement<double>((double)_cold.Sum(m => m.PartitionBytes) / files)];
        }
    }
}

/// <summary>What the cold-storage gauges need of an exported month (its manifest's sizes).</summary>
public readonly record struct ColdMonthSize(string Month, long FileBytes, long PartitionBytes);
