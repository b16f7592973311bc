namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// The one wait on observable state outside the database (an HTTP answer, a health status, a replica catching up):
/// polls until the condition holds, and fails the test naming what it waited for and the last value it saw when it
/// does not within the bound (a hang guard sized for a loaded 2-core machine, not a speed expectation). Waits on a
/// value in the database use <see cref="Progress"/>.
/// </summary>
internal static class Eventually
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(100);

    /// <summary>Waits until <paramref name="condition"/> is true.</summary>
    public static Task TrueAsync(string what, Func<Task<bool>> condition, TimeSpan within) =>
        ValueAsync(what, condition, holds => holds, within);

    /// <summary>Reads <paramref name="read"/> until <paramref name="reached"/> holds for its value, and returns that value.</summary>
    public static async Task<T> ValueAsync<T>(string what, Func<Task<T>> read, Func<T, bool> reached, TimeSpan within)
    {
        var waited = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            var value = await read();
            if (reached(value))
            {
                return value;
            }

            if (waited.Elapsed > within)
            {
                Assert.Fail($"waited {within.TotalSeconds:0} s for {what}; last seen: {value}");
            }

            await Task.Delay(Interval);
        }
    }
}
