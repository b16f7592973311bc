using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// `dotnet run --project TodoScale.AppHost` (the default, https profile) for a user who ran `dotnet dev-certs https
/// --trust`, in container mode: the dashboard is served over HTTPS with that certificate, and Aspire switches Redis to
/// TLS with it (rediss://), which the API's cache and the AppHost's health check must then speak.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[NeedsContainerEngine]
public sealed class ContainerLaunchProfileTests : IDisposable
{
    private readonly string _home = Directory.CreateTempSubdirectory("todoscale-home-").FullName;
    private readonly string _dataRoot = TestApp.NewDataRoot();

    [EngineFact]
    public async Task With_a_trusted_developer_certificate_the_dashboard_is_https_and_the_cache_speaks_TLS()
    {
        using var certificate = await DotnetRunAppHost.TrustedDeveloperCertificateAsync(_home);
        await using var appHost = DotnetRunAppHost.Start(_home, launchProfile: null,
        [
            "--Infra:Mode=container",
            $"--Infra:Grafana={(ContainerEngine.HasGrafana ? "true" : "false")}",
            $"--ASPIRE_CONTAINER_RUNTIME={ContainerEngine.Runtime}",
            $"--Infra:DataRoot={_dataRoot}",
            "--DcpPublisher:RandomizePorts=true",
            $"--ASPNETCORE_URLS=https://localhost:{DotnetRunAppHost.FreePort()}",
            $"--ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL=https://localhost:{DotnetRunAppHost.FreePort()}",
            $"--ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL=https://localhost:{DotnetRunAppHost.FreePort()}",
        ]);

        var login = await appHost.WaitForAsync(@"Login to the dashboard at (https://\S+)", TestApp.StartTimeout);
        var cache = new Uri(await appHost.WaitForAsync(@"TodoScale cache is ready at (\S+)", TestApp.StartTimeout));
        var api = await appHost.WaitForAsync(@"TodoScale api is ready at (http://\S+)", TestApp.StartTimeout);

        // The dashboard presents the developer certificate (this test process is another user: it pins it rather
        // than trusting it).
        string? presented = null;
        using (var handler = new HttpClientHandler { ServerCertificateCustomValidationCallback = (_, cert, _, _) => (presented = cert?.GetCertHashString()) is not null })
        using (var https = new HttpClient(handler))
        using (var dashboard = await https.GetAsync(login))
        {
            Assert.True(dashboard.IsSuccessStatusCode, $"{login} -> {(int)dashboard.StatusCode}");
        }

        Assert.Equal(certificate.Thumbprint, presented);

        // Redis speaks TLS on the port the connection string names, with the same certificate, behind its password.
        Assert.Equal("rediss", cache.Scheme);
        var password = await File.ReadAllTextAsync(Path.Combine(_dataRoot, "redis.password"));
        Assert.Equal("+OK\r\n+PONG\r\n", await RedisOverTlsAsync(cache.Port, certificate, $"AUTH {password}\r\nPING\r\n"));

        // The API reaches it so: its health (database, replica, cache; a failing cache is Degraded) is Healthy.
        using var http = new HttpClient();
        Assert.Equal("Healthy", await http.GetStringAsync($"{api}/health"));

        await appHost.StopAsync();
    }

    private static async Task<string> RedisOverTlsAsync(int port, X509Certificate2 expected, string commands)
    {
        using var tcp = new TcpClient();
        await tcp.ConnectAsync("localhost", port);
        await using var tls = new SslStream(tcp.GetStream(), false, (_, cert, _, _) => cert?.GetCertHashString() == expected.Thumbprint);
        await tls.AuthenticateAsClientAsync("localhost");
        await tls.WriteAsync(Encoding.ASCII.GetBytes(commands));
        var reply = new StringBuilder();
        var buffer = new byte[256];
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (reply.ToString().Split("\r\n").Length < 3)
        {
            var read = await tls.ReadAsync(buffer, cts.Token);
            if (read == 0)
            {
                break;
            }

            reply.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        return reply.ToString();
    }

    public void Dispose()
    {
        if (ContainerEngine.MissingReason is null)
        {
            ContainerEngine.RemoveVolumes(_dataRoot);
        }

        Directory.Delete(_home, recursive: true);
        Directory.Delete(_dataRoot, recursive: true);
    }
}
