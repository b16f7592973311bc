using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Aspire.Hosting.Testing;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// Another instance of the built API, a process of its own on a free port, on the shared stack's primary, replica
/// and Redis and signed with its key, with settings of its own: a second instance behind the same load balancer.
/// Killed (its whole tree) on dispose.
/// </summary>
public sealed class SecondApi : IAsyncDisposable
{
    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private SecondApi(Process process, Uri address)
    {
        _process = process;
        Address = address;
        process.OutputDataReceived += (_, e) => { lock (_output) { _output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (_output) { _output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public Uri Address { get; }

    /// <summary>What the instance has written so far.</summary>
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

    /// <summary>Starts it and waits until it answers /alive.</summary>
    public static async Task<SecondApi> StartAsync(AppHostFixture fixture, params (string Name, string Value)[] settings)
    {
        int port;
        using (var listener = new TcpListener(IPAddress.Loopback, 0))
        {
            listener.Start();
            port = ((IPEndPoint)listener.LocalEndpoint).Port;
        }

        var key = (await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"))).Trim();
        var info = ApiProcess.StartInfo($"http://127.0.0.1:{port}",
            (await fixture.App.GetConnectionStringAsync("todos"))!, (await fixture.App.GetConnectionStringAsync("todos-replica"))!,
            (await fixture.App.GetConnectionStringAsync("cache"))!, key, settings);
        var api = new SecondApi(Process.Start(info)!, new Uri($"http://127.0.0.1:{port}"));
        try
        {
            using var http = new HttpClient { BaseAddress = api.Address, Timeout = TimeSpan.FromSeconds(30) };
            await Eventually.TrueAsync("the second API answering /alive", async () =>
            {
                if (api._process.HasExited)
                {
                    throw new InvalidOperationException($"the second API exited ({api._process.ExitCode}): {api.Output}");
                }

                try
                {
                    return (await http.GetAsync("/alive")).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return false;
                }
            }, TimeSpan.FromMinutes(1));
            return api;
        }
        catch
        {
            await api.DisposeAsync();
            throw;
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
}
