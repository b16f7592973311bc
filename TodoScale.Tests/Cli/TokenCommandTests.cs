using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Cli;

/// <summary>The operators' `token` verb, run as the real CLI binary.</summary>
public sealed class TokenCommandTests
{
    private const string Key = "5f1d3c9a0b7e4d2f8a6c1e9b3d7f5a2c4e8b0d6f2a9c7e1b5d3f8a0c6e4b2d9f";

    [Fact]
    public async Task Prints_only_a_signed_jwt_on_stdout()
    {
        var (exitCode, output) = await OperatorCli.RunAsync(
            ["token", "--user", Guid.CreateVersion7().ToString()], null, ("Auth__SigningKey", Key));
        Assert.True(exitCode == 0, output);
        Assert.Matches(@"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$", output);
    }

    [Theory]
    [InlineData("not-a-uuid", Key, "--user must be a non-empty uuid")]
    [InlineData("00000000-0000-0000-0000-000000000000", Key, "--user must be a non-empty uuid")]
    [InlineData("0190a1b2-0000-7000-8000-000000000001", "", "No signing key: set Auth:SigningKey")]
    [InlineData("0190a1b2-0000-7000-8000-000000000001", "abcd", "HS256 needs at least 32")]
    public async Task Bad_input_exits_2_with_a_readable_message_and_no_token(string user, string key, string message)
    {
        var (exitCode, output) = await OperatorCli.RunAsync(["token", "--user", user], null, ("Auth__SigningKey", key));
        Assert.Equal(2, exitCode);
        Assert.Contains(message, output);
        Assert.DoesNotContain("   at ", output);
    }

    [Fact]
    public async Task A_missing_user_is_a_usage_error()
    {
        var (exitCode, output) = await OperatorCli.RunAsync(["token"], null, ("Auth__SigningKey", Key));
        Assert.NotEqual(0, exitCode);
        Assert.Contains("--user", output);
    }
}
