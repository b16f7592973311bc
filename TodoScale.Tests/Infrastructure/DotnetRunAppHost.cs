using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// The AppHost started the way an Aspire user starts it: `dotnet run --project TodoScale.AppHost [--launch-profile
/// ...]`, under a home folder of its own (so which developer certificate exists is the test's choice, not the
/// machine's), with its output read line by line. Stopped with SIGTERM, as Ctrl+C in a terminal would.
/// </summary>
internal sealed class DotnetRunAppHost : IAsyncDisposable
{
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(90);

    private readonly Process _process;
    private readonly StringBuilder _output = new();
    private readonly TaskCompletionSource _exited = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _outputEnded = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _streamsEnded;

    private DotnetRunAppHost(Process process)
    {
        _process = process;
    }

    /// <summary>What the AppHost printed so far (stdout and stderr, interleaved as read).</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public bool HasExited => _exited.Task.IsCompleted;

    public int ExitCode => _process.ExitCode;

    /// <summary>
    /// The environment of a user whose home is <paramref name="home"/>: the NuGet cache and the container engine's
    /// configuration stay the real user's (rootless Podman's storage and Docker's contexts live under the real home).
    /// </summary>
    public static Dictionary<string, string> HomeEnvironment(string home)
    {
        var realHome = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        string Keep(string name, string fallback) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value : fallback;
        return new()
        {
            ["HOME"] = home,
            ["DOTNET_CLI_HOME"] = home,
            ["DOTNET_NOLOGO"] = "1",
            ["DOTNET_SKIP_FIRST_TIME_EXPERIENCE"] = "1",
            ["NUGET_PACKAGES"] = Keep("NUGET_PACKAGES", Path.Combine(realHome, ".nuget", "packages")),
            ["DOCKER_CONFIG"] = Keep("DOCKER_CONFIG", Path.Combine(realHome, ".docker")),
            ["XDG_CONFIG_HOME"] = Keep("XDG_CONFIG_HOME", Path.Combine(realHome, ".config")),
            ["XDG_DATA_HOME"] = Keep("XDG_DATA_HOME", Path.Combine(realHome, ".local", "share")),
        };
    }

    /// <summary>`dotnet dev-certs https --trust` for the user of <paramref name="home"/>: the certificate (public part) it made.</summary>
    public static async Task<System.Security.Cryptography.X509Certificates.X509Certificate2> TrustedDeveloperCertificateAsync(string home)
    {
        var info = new ProcessStartInfo("dotnet", ["dev-certs", "https", "--trust"]) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var (name, value) in HomeEnvironment(home))
        {
            info.Environment[name] = value;
        }

        // On Linux it trusts the certificate for .NET (the user's Root store) and asks for SSL_CERT_DIR for OpenSSL's
        // other clients, which it reports as a partial failure; the .NET processes here (AppHost, API) trust it.
        var (_, output) = await ProcessRunner.RunAsync(info, TimeSpan.FromMinutes(1));
        var pem = Directory.GetFiles(Path.Combine(home, ".aspnet", "dev-certs", "trust"), "*.pem").SingleOrDefault()
            ?? throw new InvalidOperationException($"dotnet dev-certs https --trust made no certificate: {output}");
        return System.Security.Cryptography.X509Certificates.X509Certificate2.CreateFromPem(await File.ReadAllTextAsync(pem));
    }

    /// <param name="launchProfile">A profile of TodoScale.AppHost/Properties/launchSettings.json; null: the default (the first).</param>
    /// <param name="args">The AppHost's own arguments (after --).</param>
    public static DotnetRunAppHost Start(string home, string? launchProfile, IEnumerable<string> args)
    {
        var info = new ProcessStartInfo("dotnet",
        [
            "run", "--project", Path.Combine(RepositoryPaths.Root, "TodoScale.AppHost"), "-c", RepositoryPaths.Configuration, "--no-build",
            .. launchProfile is null ? Array.Empty<string>() : ["--launch-profile", launchProfile],
            "--", .. args,
        ])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in HomeEnvironment(home))
        {
            info.Environment[name] = value;
        }

        // What the test run's own environment may hold that a user's shell would not.
        foreach (var name in new[] { "DOTNET_LAUNCH_PROFILE", "ASPNETCORE_URLS", "ASPIRE_CONTAINER_RUNTIME", "DOTNET_ENVIRONMENT", "ASPNETCORE_ENVIRONMENT" })
        {
            info.Environment.Remove(name);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var host = new DotnetRunAppHost(process);
        process.OutputDataReceived += (_, e) => host.Append(e.Data);
        process.ErrorDataReceived += (_, e) => host.Append(e.Data);
        process.Exited += (_, _) => host._exited.TrySetResult();
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return host;
    }

    /// <summary>A port nothing listens on now (the dashboard's fixed ports must not clash with a developer's stack).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>
    /// Waits for a line matching <paramref name="pattern"/> and returns its first group (or the match): woken by each
    /// line the AppHost prints, failing when its output ends (it exited) without one, or after <paramref name="within"/>.
    /// </summary>
    public async Task<string> WaitForAsync(string pattern, TimeSpan within)
    {
        var regex = new Regex(pattern, RegexOptions.Multiline);
        var waited = Stopwatch.StartNew();
        while (true)
        {
            Task changed;
            lock (_output)
            {
                if (regex.Match(_output.ToString()) is { Success: true } match)
                {
                    return match.Groups.Count > 1 ? match.Groups[1].Value : match.Value;
                }

                changed = _changed.Task;
            }

            if (_outputEnded.Task.IsCompleted)
            {
                Assert.Fail($"the AppHost exited ({ExitCode}) before printing /{pattern}/:\n{Tail()}");
            }

            try
            {
                await Task.WhenAny(changed, _outputEnded.Task).WaitAsync(within - waited.Elapsed);
            }
            catch (Exception e) when (e is TimeoutException or ArgumentOutOfRangeException)
            {
                Assert.Fail($"/{pattern}/ not printed within {within.TotalSeconds:0} s (a hang guard):\n{Tail()}");
            }
        }
    }

    public async Task<int> WaitForExitAsync(TimeSpan within)
    {
        try
        {
            await _exited.Task.WaitAsync(within);
        }
        catch (TimeoutException)
        {
            Assert.Fail($"the AppHost did not exit within {within.TotalSeconds:0} s:\n{Tail()}");
        }

        _process.WaitForExit(); // the output's last lines
        return _process.ExitCode;
    }

    /// <summary>Ctrl+C's SIGTERM to `dotnet run`, which passes it on; the stack stops as the AppHost stops it.</summary>
    public async Task StopAsync()
    {
        if (!HasExited)
        {
            ProcessRunner.Signal(_process.Id, 15);
            await WaitForExitAsync(StopTimeout);
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!HasExited)
            {
                ProcessRunner.Signal(_process.Id, 15);
                try
                {
                    await _exited.Task.WaitAsync(StopTimeout);
                }
                catch (TimeoutException)
                {
                    _process.Kill(entireProcessTree: true);
                }
            }
        }
        finally
        {
            _process.Dispose();
        }
    }

    private string Tail() => string.Join('\n', Output.Split('\n').TakeLast(40));

    /// <summary>A line of stdout or stderr (null: that stream ended); each wakes the waiters.</summary>
    private void Append(string? line)
    {
        if (line is null)
        {
            if (Interlocked.Increment(ref _streamsEnded) == 2)
            {
                _outputEnded.TrySetResult();
            }

            return;
        }

        TaskCompletionSource woken;
        lock (_output)
        {
            _output.AppendLine(line);
            woken = _changed;
            _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        woken.TrySetResult();
    }
}
