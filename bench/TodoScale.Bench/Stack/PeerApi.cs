using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using TodoScale.Testing;

namespace TodoScale.Bench.Stack;

/// <summary>
/// bench/TodoScale.Bench.Peer (the API a team would write without TodoScale: EF Core over the unpartitioned copy,
/// no replica, no cache) run as a process on the stack's primary, accepting the stack's tokens. Disposing kills it.
/// </summary>
public sealed class PeerApi : IAsyncDisposable
{
    private readonly Process _process;

    private PeerApi(Process process, Uri address) => (_process, Address) = (process, address);

    public Uri Address { get; }

    public static async Task<PeerApi> StartAsync(BenchStack stack, string table, CancellationToken cancellationToken)
    {
        var dll = RepositoryPaths.ProjectOutput(Path.Combine("bench", "TodoScale.Bench.Peer"), "TodoScale.Bench.Peer.dll");
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} is missing: build the solution first (./build.sh bench does).");
        }

        var address = new Uri($"http://127.0.0.1:{FreePort()}");
        var info = new ProcessStartInfo("dotnet", [dll]) { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["DOTNET_ENVIRONMENT"] = "Production";
        info.Environment["ASPNETCORE_URLS"] = address.ToString();
        info.Environment["ConnectionStrings__todos"] = stack.PrimaryConnectionString;
        info.Environment["Auth__SigningKey"] = stack.SigningKey;
        info.Environment["Peer__Table"] = table;
        info.Environment["Logging__LogLevel__Default"] = "Warning";
        var process = Process.Start(info) ?? throw new InvalidOperationException("could not start the peer API");
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var peer = new PeerApi(process, address);
        using var http = new HttpClient { BaseAddress = address, Timeout = TimeSpan.FromSeconds(5) };
        var deadline = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if ((await http.GetAsync("/health", cancellationToken)).IsSuccessStatusCode)
                {
                    return peer;
                }
            }
            catch (HttpRequestException) when (!process.HasExited && deadline.Elapsed < TimeSpan.FromMinutes(1))
            {
                await Task.Delay(100, cancellationToken); // it has not bound its port yet
                continue;
            }
            catch
            {
                await peer.DisposeAsync();
                throw;
            }

            await peer.DisposeAsync();
            throw new InvalidOperationException($"the peer API did not answer /health at {address} (exited: {process.HasExited})");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
