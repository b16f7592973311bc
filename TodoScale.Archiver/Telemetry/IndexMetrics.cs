using System.Diagnostics.Metrics;
using TodoScale.ServiceDefaults;

namespace TodoScale.Archiver.Telemetry;

/// <summary>
/// Index usage per partition and index, from the latest <see cref="IndexUsageSnapshot"/> (refreshed with the
/// partition gauges): scans and index tuples read (PostgreSQL's counters since the statistics' reset, exported as
/// counters, so rate() works) and size. Labels: table (the partitioned parent), partition (the relation) and index
/// (the index as the migrations name it). No alert reads them: `partitions status --indexes` reports unused ones.
/// </summary>
public sealed class IndexMetrics
{
    public const string Scans = "todoscale.index.scans";
    public const string TuplesRead = "todoscale.index.tuples_read";
    public const string Size = "todoscale.index.size";

    private readonly Lock _gate = new();
    private IndexUsageSnapshot? _snapshot;

    public IndexMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(TodoScaleMeters.Archiver);
        meter.CreateObservableCounter(Scans, () => Observe(i => i.Scans), "{scan}", "Index scans per partition and index since the statistics were reset (pg_stat_user_indexes.idx_scan).");
        meter.CreateObservableCounter(TuplesRead, () => Observe(i => i.TuplesRead), "{tuple}", "Index entries read per partition and index (idx_tup_read).");
        meter.CreateObservableGauge(Size, () => Observe(i => i.Bytes), "By", "Size on disk per partition and index.");
    }

    public void Observe(IndexUsageSnapshot snapshot)
    {
        lock (_gate)
        {
            _snapshot = snapshot;
        }
    }

    private IEnumerable<Measurement<long>> Observe(Func<IndexStat, long> value)
    {
        lock (_gate)
        {
            return _snapshot is null ? [] : [.. _snapshot.Indexes.Select(i => new Measurement<long>(value(i),
                new KeyValuePair<string, object?>(ArchiveMetrics.Tags.Table, i.Table),
                new KeyValuePair<string, object?>(ArchiveMetrics.Tags.Partition, i.Partition),
                new KeyValuePair<string, object?>("index", i.Index)))];
        }
    }
}
