using System.Diagnostics;
using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// Waits on what a test can observe (a value in the database, a counter) instead of sleeping for a guessed time: a
/// sleep is too short on a loaded machine and needlessly long on a fast one, while the state means the same on both.
/// The deadlines are hang guards, generous for a loaded 2-core machine, not speed expectations.
/// </summary>
internal static class Progress
{
    /// <summary>How long a wait may last before the test fails as hung.</summary>
    public static readonly TimeSpan Deadline = TimeSpan.FromMinutes(2);

    /// <summary>Between two reads: short against a batch, so a kill lands close to the moment its progress was seen.</summary>
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(25);

    /// <summary>
    /// Reads <paramref name="sql"/> (one value) on <paramref name="connection"/> until <paramref name="reached"/> holds
    /// for it (true), or until <paramref name="ended"/> says the work being watched is over (false: not reached).
    /// Fails the test, naming <paramref name="what"/> and the last value read, when neither happens within
    /// <paramref name="within"/> (<see cref="Deadline"/> by default).
    /// </summary>
    public static async Task<bool> UntilAsync<T>(
        NpgsqlConnection connection, string sql, Func<T, bool> reached, Func<bool> ended, string what, TimeSpan? within = null)
    {
        var limit = within ?? Deadline;
        var waited = Stopwatch.StartNew();
        var last = "nothing";
        while (waited.Elapsed < limit)
        {
            // Ended is asked before the read: work that ends between the two is seen as reached, and the caller's
            // next step (a kill) finds it already over.
            if (ended())
            {
                return false;
            }

            var value = await Sql.ScalarAsync<T>(connection, sql);
            if (reached(value))
            {
                return true;
            }

            last = $"{value}";
            await Task.Delay(Interval);
        }

        Assert.Fail($"{what}: not seen within {limit.TotalSeconds:0} s (a hang guard); last read: {last}");
        throw new InvalidOperationException();
    }

    /// <summary>
    /// The same wait on a process's work: false when <paramref name="process"/> exited first. When the wait fails, the
    /// process (and its tree) is killed, so a failed test leaves nothing running on the database.
    /// </summary>
    public static async Task<bool> UntilAsync<T>(
        NpgsqlConnection connection, string sql, Func<T, bool> reached, Process process, string what, TimeSpan? within = null)
    {
        try
        {
            return await UntilAsync(connection, sql, reached, () => process.HasExited, what, within);
        }
        catch
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
    }

    /// <summary>
    /// Checks <paramref name="reached"/> (in-memory state, such as a counter) until it holds; fails the test with
    /// <paramref name="observed"/> when it does not within <paramref name="within"/> (<see cref="Deadline"/> by default).
    /// </summary>
    public static async Task UntilAsync(Func<bool> reached, Func<string> observed, TimeSpan? within = null)
    {
        var limit = within ?? Deadline;
        var waited = Stopwatch.StartNew();
        while (!reached())
        {
            if (waited.Elapsed >= limit)
            {
                Assert.Fail($"not seen within {limit.TotalSeconds:0} s (a hang guard): {observed()}");
            }

            await Task.Delay(Interval);
        }
    }

    /// <summary>
    /// Waits for <paramref name="process"/> to exit, its redirected output read to the end; kills it (and its tree)
    /// and fails the test when it is still running after <paramref name="within"/>, a hang guard.
    /// </summary>
    public static async Task ExitAsync(Process process, string what, TimeSpan within)
    {
        using var hang = new CancellationTokenSource(within);
        try
        {
            await process.WaitForExitAsync(hang.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{what}: still running after {within.TotalMinutes:0} minutes (a hang guard, not a speed expectation)");
        }

        process.WaitForExit(); // the output's last lines
    }
}
