using System.Globalization;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// One wall clock, set by the test, for the PostgreSQL servers and CLI processes it starts: libfaketime (Debian's
/// libfaketime, which ./build.sh installs) preloaded into them, reading its offset from a file this clock writes.
/// Every process given <see cref="ServerEnvironment"/> or <see cref="ProcessEnvironment"/> sees the same time (real
/// time plus the offset, so it runs), and a <see cref="Set"/> reaches running processes within a second or two
/// (libfaketime re-reads the file at most every second): wait for it with <see cref="WaitUntilServerSeesAsync"/>,
/// never with a sleep. On a faked server PostgreSQL's own timers do not fire (statement_timeout, lock_timeout,
/// deadlock detection: see <see cref="Traits.ServerTimers"/>), so a test on this clock must not rely on them.
/// </summary>
public sealed class FakeClock : IDisposable
{
    private static readonly string[] Libraries =
    [
        "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/aarch64-linux-gnu/faketime/libfaketimeMT.so.1",
        "/usr/lib/faketime/libfaketimeMT.so.1",
    ];

    private readonly string _directory;
    private readonly string _file;
    private long _offsetSeconds;

    public FakeClock(DateTimeOffset start)
    {
        Library = Libraries.FirstOrDefault(File.Exists)
            ?? throw new InvalidOperationException(
                $"libfaketime is not installed (looked for {string.Join(", ", Libraries)}): run ./build.sh test, which installs the faketime package");
        _directory = Directory.CreateTempSubdirectory("todoscale-clock-").FullName;
        ProcessRunner.MakeTraversable(_directory); // the postgres user reads the file too
        _file = Path.Combine(_directory, "faketimerc");
        Set(start);
    }

    public string Library { get; }

    /// <summary>What the faked processes read as the time now (to the second the offset is kept in).</summary>
    public DateTimeOffset Now => RealNow().AddSeconds(Interlocked.Read(ref _offsetSeconds));

    /// <summary>Moves the clock of every faked process so that it reads <paramref name="at"/> now, and runs on from there.</summary>
    public void Set(DateTimeOffset at)
    {
        var offset = (long)Math.Round((at - RealNow()).TotalSeconds);
        var temporary = _file + ".new";
        File.WriteAllText(temporary, offset.ToString("+0;-0", CultureInfo.InvariantCulture) + "\n");
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(temporary, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
        }

        File.Move(temporary, _file, overwrite: true); // readers see the old line or the new one, never half of one
        Interlocked.Exchange(ref _offsetSeconds, offset);
    }

    /// <summary>
    /// The environment that puts the PostgreSQL server on this clock. It gets it through
    /// <see cref="ProcessRunner.StartInfo"/>: preloaded into setpriv (root), libfaketime makes a semaphore that the
    /// server, once it is the postgres user, may not open ("sem_open failed ... Permission denied"). Its monotonic
    /// clock stays real, so a <see cref="Set"/> moves no timeout of a running server.
    /// </summary>
    public (string Name, string Value)[] ServerEnvironment() => [.. Common(), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")];

    /// <summary>
    /// The environment that puts a .NET process (the CLI) on this clock. Its monotonic clock moves by the same
    /// offset: with only the wall clock faked, every Npgsql read failed at once with "Timeout during reading
    /// attempt" (measured). Set the clock before starting such a process, not while it runs.
    /// </summary>
    public (string Name, string Value)[] ProcessEnvironment() => Common();

    private (string Name, string Value)[] Common() =>
    [
        ("LD_PRELOAD", Library),
        ("FAKETIME_TIMESTAMP_FILE", _file),
        ("FAKETIME_CACHE_DURATION", "1"),
    ];

    /// <summary>Waits until a new session of the server reads now() at or after <paramref name="at"/> (it follows a <see cref="Set"/> within seconds).</summary>
    public static async Task<DateTimeOffset> WaitUntilServerSeesAsync(string connectionString, DateTimeOffset at, TimeSpan patience)
    {
        // One session: a server process re-reads the clock file at most a second after it changed.
        await using var connection = await Sql.OpenAsync(connectionString + ";Pooling=false");
        var seen = DateTimeOffset.MinValue;
        await Progress.UntilAsync<DateTime>(connection, "SELECT now()",
            now => (seen = new DateTimeOffset(DateTime.SpecifyKind(now, DateTimeKind.Utc))) >= at,
            () => false, $"the server's clock at {at:O}", patience);
        return seen;
    }

    /// <summary>
    /// The real time, which libfaketime's offsets count from. When the whole test run is itself on a faked clock
    /// (<c>./build.sh test --at ...</c> sets LD_PRELOAD and FAKETIME_TIMESTAMP_FILE for it), this process reads the
    /// faked time, so that file's offset is taken off again.
    /// </summary>
    private static DateTimeOffset RealNow()
    {
        var now = DateTimeOffset.UtcNow;
        if (System.Environment.GetEnvironmentVariable("LD_PRELOAD") is not { } preload || !preload.Contains("faketime", StringComparison.Ordinal))
        {
            return now;
        }

        var setting = System.Environment.GetEnvironmentVariable("FAKETIME")
            ?? (System.Environment.GetEnvironmentVariable("FAKETIME_TIMESTAMP_FILE") is { } file && File.Exists(file) ? File.ReadAllText(file).Trim() : null);
        if (setting is null)
        {
            return now;
        }

        return long.TryParse(setting, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var seconds)
            ? now.AddSeconds(-seconds)
            : throw new InvalidOperationException($"this test run is on a faked clock set to '{setting}': FakeClock can only undo an offset in whole seconds (+N or -N)");
    }

    public void Dispose() => Directory.Delete(_directory, recursive: true);
}
