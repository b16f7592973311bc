using System.Net;
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
        await using var api = await SecondApi.StartAsync(fixture, (setting, value));
        using var http = new HttpClient { BaseAddress = api.Address, Timeout = TimeSpan.FromSeconds(30) };
        Assert.Equal(HttpStatusCode.ServiceUnavailable, (await http.GetAsync("/health")).StatusCode);
        await Progress.UntilAsync(() => api.Output.Contains("bypasses row-level security", StringComparison.Ordinal),
            () => $"the API's log naming the reason: {api.Output}");
        Assert.Contains("act as postgres", api.Output);
    }
}
