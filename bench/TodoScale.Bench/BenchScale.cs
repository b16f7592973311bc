namespace TodoScale.Bench;

/// <summary>
/// How big a run is. Todos are generated for <see cref="Users"/> users (Zipf by count) until <see cref="Todos"/>;
/// those finished more than 60 days ago land in the archive (earlier passes' work), the rest in todos_active,
/// of which the finished ones older than 30 days are what workload 3's pass moves. <see cref="ApiWarmup"/> is the
/// load the API gets before a measured run (<see cref="LegacyRows"/>: the size of `todos` in the legacy migration run, and of todos_active in the re-split run): after a restart the JIT's tiered compilation takes a core for about
/// 20 s (measured with perf: 30% of the API's CPU in the tier-1 compiler 20 s after a restart, none after 60 s).
/// </summary>
public sealed record BenchScale(
    string Name,
    int Users,
    long Todos,
    long[] CurvePoints,
    TimeSpan QueryRun,
    TimeSpan HttpRun,
    TimeSpan Warmup,
    TimeSpan ApiWarmup,
    string SharedBuffers,
    long LegacyRows)
{
    public static readonly BenchScale Tiny = new("tiny", 300, 30_000, [3_000], TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(1), "256MB", 20_000);
    public static readonly BenchScale Small = new("small", 10_000, 1_000_000, [100_000], TimeSpan.FromSeconds(4), TimeSpan.FromSeconds(6), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(20), "1GB", 1_000_000);
    public static readonly BenchScale Medium = new("medium", 100_000, 20_000_000, [1_000_000], TimeSpan.FromSeconds(8), TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(3), TimeSpan.FromSeconds(30), "4GB", 10_000_000);
    public static readonly BenchScale Large = new("large", 250_000, 50_000_000, [1_000_000, 10_000_000], TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(15), TimeSpan.FromSeconds(5), TimeSpan.FromSeconds(30), "6GB", 50_000_000);

    public static IReadOnlyList<BenchScale> All { get; } = [Tiny, Small, Medium, Large];

    public static BenchScale? Find(string name) => All.FirstOrDefault(s => s.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
}
