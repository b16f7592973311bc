using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Aspire.Hosting.Testing;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>
/// An API whose primary connections would act as a role that bypasses row-level security (here: the owner's login
/// with Database:Role emptied, as a pooled setup without the pooler's todoscale_app login would be) reports itself
/// Unhealthy, naming why, so no orchestrator or load balancer sends it traffic.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class RowSecurityGuardTests(AppHostFixture fixture)
{
    [Theory]
    [InlineData("Database__Role", "")]
    [InlineData("Database__Pooled", "true")]
    public async Task An_api_acting_as_a_role_that_bypasses_row_level_security_is_unhealthy_and_says_why(string setting, string value)
    {
        var port = FreePort();
        var key = (await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"))).Trim();
        var info = ApiProcess.StartInfo($"http://127.0.0.1:{port}",
            (await fixture.App.GetConnectionStringAsync("todos"))!, (await fixture.App.GetConnectionStringAsync("todos-replica"))!,
            (await fixture.App.GetConnectionStringAsync("cache"))!, key, (setting, value));
        var output = new StringBuilder();
        using var api = Process.Start(info)!;
        api.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        api.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        api.BeginOutputReadLine();
        api.BeginErrorReadLine();
        try
        {
            using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromSeconds(30) };
            var status = await Eventually.ValueAsync("the API's /health answering", async () =>
            {
                try
                {
                    return (await http.GetAsync("/health")).StatusCode;
                }
                catch (HttpRequestException)
                {
                    return (HttpStatusCode)0;
                }
            }, s => s != 0, TimeSpan.FromMinutes(1));

            Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
            await Progress.UntilAsync(() => { lock (output) { return output.ToString().Contains("bypasses row-level security", StringComparison.Ordinal); } },
                () => $"the API's log naming the reason: {output}");
            Assert.Contains("act as postgres", output.ToString());
        }
        finally
        {
            api.Kill(entireProcessTree: true);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
