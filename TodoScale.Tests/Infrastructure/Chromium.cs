using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// A headless Chromium (or Chrome) to load a page as a user's browser would: its scripts run, and what it renders
/// is read back as the DOM and as a screenshot. `./build.sh test` installs Debian's `chromium` where it can; the
/// tests that need one are skipped, with <see cref="MissingReason"/>, where there is none.
/// </summary>
public static class Chromium
{
    public static string? Executable { get; } = Find();

    public static string? MissingReason => Executable is null
        ? "no Chromium or Chrome on PATH (or in $CHROME): install chromium (./build.sh test does, on Debian as root) to check the rendered API reference"
        : null;

    /// <summary>Loads <paramref name="url"/>, lets its scripts run (up to <paramref name="settle"/> of the page's virtual time), and returns the DOM.</summary>
    public static Task<string> DumpDomAsync(string url, string profile, TimeSpan settle) =>
        RunAsync(profile, settle, ["--dump-dom", url]);

    /// <summary>Loads <paramref name="url"/> like <see cref="DumpDomAsync"/> and saves what it shows as a PNG.</summary>
    public static Task<string> ScreenshotAsync(string url, string profile, TimeSpan settle, string png, int width, int height) =>
        RunAsync(profile, settle, [$"--screenshot={png}", $"--window-size={width},{height}", url]);

    private static async Task<string> RunAsync(string profile, TimeSpan settle, IEnumerable<string> args)
    {
        // --no-sandbox: the sandbox needs user namespaces a root test run does not get.
        var info = ProcessRunner.StartInfo(Executable ?? throw new InvalidOperationException(MissingReason),
        [
            "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars", $"--user-data-dir={profile}",
            $"--virtual-time-budget={(int)settle.TotalMilliseconds}", .. args,
        ]);
        var (exitCode, output, errors) = await ProcessRunner.RunApartAsync(info, TimeSpan.FromMinutes(2)); // a hang guard, not a speed expectation
        return exitCode == 0 ? output : throw new InvalidOperationException($"{Executable} exited with {exitCode}: {errors}");
    }

    private static string? Find()
    {
        if (Environment.GetEnvironmentVariable("CHROME") is { Length: > 0 } configured && File.Exists(configured))
        {
            return configured;
        }

        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries);
        return new[] { "chromium", "chromium-browser", "google-chrome", "google-chrome-stable" }
            .SelectMany(name => path.Select(dir => Path.Combine(dir, name)))
            .Concat(["/Applications/Google Chrome.app/Contents/MacOS/Google Chrome", "/Applications/Chromium.app/Contents/MacOS/Chromium"])
            .FirstOrDefault(File.Exists);
    }
}

/// <summary>A [Fact] that needs <see cref="Chromium"/>: skipped, with the reason, where there is none.</summary>
public sealed class BrowserFactAttribute : FactAttribute
{
    public BrowserFactAttribute() => Skip = Chromium.MissingReason;
}
