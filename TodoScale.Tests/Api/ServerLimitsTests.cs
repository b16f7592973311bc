using System.Net.Sockets;
using System.Text;
using Aspire.Hosting.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>
/// What Kestrel refuses before the application sees a request answers with a status, never a dropped connection:
/// sent as raw bytes over a socket, as a fuzzer or a broken client sends them (HttpClient would refuse to send most).
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class ServerLimitsTests(AppHostFixture fixture)
{
    public static TheoryData<string, int> Requests => new()
    {
        { "GET /api/" + new string('a', 100_000) + " HTTP/1.1\r\nHost: api\r\n\r\n", 414 },   // the request line over 8 KiB
        { "GET /api/todos HTTP/1.1\r\nHost: api\r\nX-Big: " + new string('x', 40_000) + "\r\n\r\n", 431 }, // headers over 32 KiB
        { "GET /api/todos/%00 HTTP/1.1\r\nHost: api\r\n\r\n", 400 },                          // a NUL in the path
        { "GARBAGE\r\n\r\n", 400 },                                                             // not a request line
        { "GET /api/todos HTTP/1.1\r\nHost: api\r\nContent-Length: nope\r\n\r\n", 400 },       // a header that does not parse
    };

    [Theory]
    [MemberData(nameof(Requests))]
    public async Task A_request_kestrel_refuses_gets_a_status_line(string request, int status)
    {
        var endpoint = fixture.App.GetEndpoint("api", "http");
        using var client = new TcpClient();
        await client.ConnectAsync(endpoint.Host, endpoint.Port);
        await using var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));

        var answer = new StringBuilder();
        var buffer = new byte[4096];
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        while (!answer.ToString().Contains("\r\n", StringComparison.Ordinal))
        {
            var read = await stream.ReadAsync(buffer, timeout.Token);
            Assert.True(read > 0, $"the connection closed without a status; read so far: '{answer}'");
            answer.Append(Encoding.ASCII.GetString(buffer, 0, read));
        }

        Assert.StartsWith($"HTTP/1.1 {status} ", answer.ToString());
    }
}
