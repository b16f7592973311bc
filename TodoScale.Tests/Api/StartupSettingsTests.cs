using System.Security.Cryptography;
using TodoScale.Testing;

namespace TodoScale.Tests.Api;

/// <summary>
/// Every options class of the API is validated the same way, at start: a bad value stops the process before it
/// serves, naming the setting (run as the built API, with the setting as an environment variable).
/// </summary>
public sealed class StartupSettingsTests
{
    private static readonly string GoodKey = Convert.ToHexString(RandomNumberGenerator.GetBytes(32));

    [Theory]
    [InlineData("Auth__SigningKey", "too-short", "SigningKey")]
    [InlineData("Database__MaxAutoPrepare", "-1", "MaxAutoPrepare")]
    [InlineData("Reads__ReplicaLagLimit", "02:00:00", "ReplicaLagLimit")]
    [InlineData("Cache__MaxPendingUsers", "0", "MaxPendingUsers")]
    public async Task A_bad_setting_stops_the_api_at_start_naming_it(string variable, string value, string named)
    {
        // Nothing listens on port 1: the process must stop on its settings before it could reach a server.
        const string nowhere = "Host=127.0.0.1;Port=1;Database=todos;Username=nobody;Timeout=2";
        var info = ApiProcess.StartInfo("http://127.0.0.1:0", nowhere, nowhere, "127.0.0.1:1,abortConnect=false", GoodKey, (variable, value));

        var (exitCode, output) = await ProcessRunner.RunAsync(info, TimeSpan.FromMinutes(2));

        Assert.True(exitCode != 0, output);
        Assert.Contains("OptionsValidationException", output);
        Assert.Contains($"'{named}'", output);
    }
}
