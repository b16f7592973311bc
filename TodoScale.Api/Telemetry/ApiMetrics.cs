using System.Diagnostics.Metrics;
using TodoScale.Api.Reads;
using TodoScale.ServiceDefaults;

namespace TodoScale.Api.Telemetry;

/// <summary>The TodoScale.Api meter: database query latency per partition, read routing and the page cache.</summary>
public sealed class ApiMetrics
{
    public const string QueryDuration = "todoscale.api.db.query.duration";
    public const string ReadsRouted = "todoscale.api.reads.routed";
    public const string CacheRequests = "todoscale.api.cache.requests";
    public const string ReplicaLag = "todoscale.api.replica.lag";
    public const string ReplicaUp = "todoscale.api.replica.up";
    public const string ReplicaBytesBehind = "todoscale.api.replica.bytes_behind";
    public const string RateLimited = "todoscale.api.rate_limited";

    /// <summary>From 0.1 ms (a first page from a warm partition) to 5 s.</summary>
    public static readonly IReadOnlyList<double> QueryBuckets =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

    public static class Tags
    {
        public const string Partition = "partition";
        public const string Table = "table";
        public const string Target = "target";
        public const string Operation = "operation";
        public const string Reason = "reason";
        public const string Result = "result";
    }

    public static class Targets
    {
        public const string Primary = "primary";
        public const string Replica = "replica";
        public const string Cache = "cache";
    }

    private readonly Meter _meter;
    private readonly Histogram<double> _queryDuration;
    private readonly Counter<long> _routed;
    private readonly Counter<long> _cache;
    private readonly Counter<long> _rateLimited;

    public ApiMetrics(IMeterFactory meterFactory)
    {
        _meter = meterFactory.Create(TodoScaleMeters.Api);
        _queryDuration = _meter.CreateHistogram(
            QueryDuration, unit: "s", description: "Time of one todo query or write transaction, by partition, table and target.",
            tags: null, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = QueryBuckets });
        _routed = _meter.CreateCounter<long>(ReadsRouted, unit: "{read}", description: "Reads by where they went and why.");
        _cache = _meter.CreateCounter<long>(CacheRequests, unit: "{request}", description: "First-page cache lookups by result.");
        _rateLimited = _meter.CreateCounter<long>(RateLimited, unit: "{request}", description: "Requests refused with 429: their user was over RateLimit's budget.");
        _rateLimited.Add(0);
    }

    public void RecordQuery(TimeSpan elapsed, int partition, string table, string target, string operation) =>
        _queryDuration.Record(
            elapsed.TotalSeconds,
            new(Tags.Partition, partition.ToString("00", System.Globalization.CultureInfo.InvariantCulture)),
            new(Tags.Table, table),
            new(Tags.Target, target),
            new(Tags.Operation, operation));

    public void Routed(string target, string reason) =>
        _routed.Add(1, new(Tags.Target, target), new(Tags.Reason, reason));

    public void RequestRateLimited() => _rateLimited.Add(1);

    public void CacheHit() => _cache.Add(1, new KeyValuePair<string, object?>(Tags.Result, "hit"));

    public void CacheMiss() => _cache.Add(1, new KeyValuePair<string, object?>(Tags.Result, "miss"));

    public void CacheUnavailable() => _cache.Add(1, new KeyValuePair<string, object?>(Tags.Result, "unavailable"));

    public void ObserveReplica(Func<ReplicaState> state)
    {
        _meter.CreateObservableGauge(ReplicaLag, () => state() is { Up: true, Lag: var lag } && lag != TimeSpan.MaxValue ? lag.TotalSeconds : double.NaN,
            unit: "s", description: "How far the replica's replay is behind the primary, as time (NaN while it is down).");
        _meter.CreateObservableGauge(ReplicaBytesBehind, () => (long)state().BytesBehind,
            unit: "By", description: "WAL the replica has not replayed yet.");
        _meter.CreateObservableGauge(ReplicaUp, () => state().Up ? 1 : 0,
            unit: "{replica}", description: "1 while the replica answers as a hot standby.");
    }
}
