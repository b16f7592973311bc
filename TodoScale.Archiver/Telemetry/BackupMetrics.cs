using System.Diagnostics.Metrics;
using TodoScale.ServiceDefaults;

namespace TodoScale.Archiver.Telemetry;

/// <summary>What the repository held when last read, for the backup gauges (null: backups not set up here).</summary>
public sealed record BackupState(
    IReadOnlyDictionary<string, (DateTimeOffset Stop, TimeSpan Duration)> NewestByType, DateTimeOffset? RecoverableFrom, long RepositoryBytes);

/// <summary>
/// The backups on the TodoScale.Archiver meter: when each type last succeeded and how long it took (read from the
/// repository, so a restarted worker reports the real age), how far back a restore reaches, the repository's size,
/// and the runs by type and result. Nothing is reported where backups are not set up (container mode, Citus).
/// </summary>
public sealed class BackupMetrics
{
    public const string LastSuccess = "todoscale.backup.last_success";
    public const string LastDuration = "todoscale.backup.last_duration";
    public const string RecoverableFrom = "todoscale.backup.recoverable_from";
    public const string RepositorySize = "todoscale.backup.repository.size";
    public const string Runs = "todoscale.backup.runs";

    public static readonly string[] Types = ["full", "diff", "incr"];

    private readonly Counter<long> _runs;
    private readonly Lock _gate = new();
    private BackupState? _state;

    public BackupMetrics(IMeterFactory meterFactory)
    {
        var meter = meterFactory.Create(TodoScaleMeters.Archiver);
        meter.CreateObservableGauge(LastSuccess, () => ByType(s => s.Stop.ToUnixTimeSeconds(), zeroFullWhenNone: true), "s",
            "Unix time the newest backup of each type ended (full: 0 while there is none).");
        meter.CreateObservableGauge(LastDuration, () => ByType(s => s.Duration.TotalSeconds, zeroFullWhenNone: false), "s", "How long the newest backup of each type took.");
        meter.CreateObservableGauge(RecoverableFrom, ObserveRecoverableFrom, "s", "Unix time of the earliest instant a restore can reach (the oldest backup's end).");
        meter.CreateObservableGauge(RepositorySize, ObserveRepositorySize, "By", "Bytes in the backup repository (backups and archived WAL).");
        _runs = meter.CreateCounter<long>(Runs, "{run}", "Backups the worker took on its schedule, by type and result (`backup run` from the CLI is in audit_log).");
    }

    /// <summary>The repository as just read; from now on the gauges report.</summary>
    public void Observe(BackupState state)
    {
        lock (_gate)
        {
            if (_state is null)
            {
                foreach (var type in Types)
                {
                    foreach (var result in new[] { "ok", "failed" })
                    {
                        _runs.Add(0, new("type", type), new("result", result));
                    }
                }
            }

            _state = state;
        }
    }

    public void Ran(string type, bool ok) => _runs.Add(1, new("type", type), new("result", ok ? "ok" : "failed"));

    private IEnumerable<Measurement<double>> ByType(Func<(DateTimeOffset Stop, TimeSpan Duration), double> value, bool zeroFullWhenNone)
    {
        var state = Current();
        if (state is null)
        {
            yield break;
        }

        if (zeroFullWhenNone && !state.NewestByType.ContainsKey("full"))
        {
            yield return new Measurement<double>(0, new KeyValuePair<string, object?>("type", "full"));
        }

        foreach (var (type, newest) in state.NewestByType)
        {
            yield return new Measurement<double>(value(newest), new KeyValuePair<string, object?>("type", type));
        }
    }

    private IEnumerable<Measurement<double>> ObserveRecoverableFrom() =>
        Current()?.RecoverableFrom is { } from ? [new Measurement<double>(from.ToUnixTimeSeconds())] : [];

    private IEnumerable<Measurement<long>> ObserveRepositorySize() =>
        Current() is { } state ? [new Measurement<long>(state.RepositoryBytes)] : [];

    private BackupState? Current()
    {
        lock (_gate)
        {
            return _state;
        }
    }
}
