using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// `dotnet run --project TodoScale.AppHost`, the way Aspire users start an AppHost, on a machine without a developer
/// certificate (an empty home folder): the default https profile says what to do instead of crashing, and the http
/// profile the README names brings the whole stack up. (With a trusted certificate: ContainerLaunchProfileTests.)
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
public sealed class LaunchProfileTests : IDisposable
{
    private readonly string _home = Directory.CreateTempSubdirectory("todoscale-home-").FullName;
    private readonly string _dataRoot = TestApp.NewDataRoot();

    [Fact]
    public async Task Without_a_developer_certificate_the_default_profile_says_how_to_start_instead_of_crashing()
    {
        await using var appHost = DotnetRunAppHost.Start(_home, launchProfile: null, ["--Infra:Mode=process", $"--Infra:DataRoot={_dataRoot}"]);

        var exitCode = await appHost.WaitForExitAsync(TimeSpan.FromMinutes(2));

        Assert.Equal(1, exitCode);
        Assert.Contains("no ASP.NET Core developer certificate", appHost.Output);
        Assert.Contains("dotnet dev-certs https --trust", appHost.Output);
        Assert.Contains("--launch-profile http", appHost.Output);
        Assert.DoesNotContain("Unhandled exception", appHost.Output);
        Assert.Empty(OwnedProcesses.Under(_dataRoot)); // refused before anything started
    }

    [Fact]
    public async Task The_http_profile_brings_up_the_stack_without_a_developer_certificate_and_Ctrl_C_stops_it()
    {
        await using var appHost = DotnetRunAppHost.Start(_home, "http",
        [
            "--Infra:Mode=process",
            $"--Infra:DataRoot={_dataRoot}",
            // The profile's fixed ports (dashboard 18888, api 5180) moved aside, so a developer's running stack is no clash.
            "--DcpPublisher:RandomizePorts=true",
            $"--ASPNETCORE_URLS=http://localhost:{DotnetRunAppHost.FreePort()}",
            $"--ASPIRE_DASHBOARD_OTLP_ENDPOINT_URL=http://localhost:{DotnetRunAppHost.FreePort()}",
            $"--ASPIRE_RESOURCE_SERVICE_ENDPOINT_URL=http://localhost:{DotnetRunAppHost.FreePort()}",
        ]);

        var login = await appHost.WaitForAsync(@"Login to the dashboard at (http://\S+)", TestApp.StartTimeout);
        var api = await appHost.WaitForAsync(@"TodoScale api is ready at (http://\S+)", TestApp.StartTimeout);
        await appHost.WaitForAsync(@"TodoScale prometheus is ready at (http://\S+)", TestApp.StartTimeout);
        await appHost.WaitForAsync(@"TodoScale cache is ready at (tcp://\S+)", TestApp.StartTimeout);

        using var http = new HttpClient();
        Assert.Equal("Healthy", await http.GetStringAsync($"{api}/health")); // the database, the replica and the cache
        using var dashboard = await http.GetAsync(login); // the token logs in and lands on the dashboard
        Assert.True(dashboard.IsSuccessStatusCode, $"{login} -> {(int)dashboard.StatusCode}");
        Assert.NotEmpty(OwnedProcesses.Under(_dataRoot));

        await appHost.StopAsync();
        await Progress.UntilAsync(() => OwnedProcesses.Under(_dataRoot).Count == 0,
            () => $"still running after Ctrl+C: {string.Join("; ", OwnedProcesses.Under(_dataRoot))}", TimeSpan.FromSeconds(30));
    }

    public void Dispose()
    {
        Directory.Delete(_home, recursive: true);
        Directory.Delete(_dataRoot, recursive: true);
    }
}
