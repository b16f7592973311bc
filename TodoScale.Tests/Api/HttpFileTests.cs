using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Aspire.Hosting.Testing;
using TodoScale.ServiceDefaults.Auth;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>TodoScale.Api.http runs top to bottom against the real API, each request answering as its comment says.</summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed partial class HttpFileTests(AppHostFixture fixture)
{
    [Fact]
    public async Task Every_example_in_the_http_file_works_as_written()
    {
        var text = await File.ReadAllTextAsync(Path.Combine(RepositoryPaths.Root, "TodoScale.Api", "TodoScale.Api.http"));
        var key = (await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"))).Trim();
        var token = TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, Guid.CreateVersion7(), false, DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        using var http = fixture.App.CreateHttpClient("api", "http");
        var variables = new Dictionary<string, string> { ["host"] = http.BaseAddress!.ToString().TrimEnd('/'), ["token"] = token };
        var named = new Dictionary<string, (JsonNode? Body, HttpResponseHeaders Headers)>();

        var blocks = text.Split("\n###").Skip(1).ToList();
        Assert.True(blocks.Count >= 15, $"only {blocks.Count} requests in the file");
        foreach (var block in blocks)
        {
            var lines = block.Split('\n');
            var title = lines[0].Trim();
            var name = lines.Select(l => NameLine().Match(l)).FirstOrDefault(m => m.Success)?.Groups[1].Value;
            var rest = lines.Skip(1).SkipWhile(l => l.StartsWith('#') || l.Trim().Length == 0).ToList();
            var requestLine = Substitute(rest[0], variables, named).Split(' ');
            using var request = new HttpRequestMessage(new HttpMethod(requestLine[0]), requestLine[1]);
            var index = 1;
            var headers = new List<(string, string)>();
            for (; index < rest.Count && rest[index].Trim().Length > 0; index++)
            {
                var colon = rest[index].IndexOf(':');
                headers.Add((rest[index][..colon].Trim(), Substitute(rest[index][(colon + 1)..].Trim(), variables, named)));
            }

            var body = string.Join('\n', rest.Skip(index)).Trim();
            if (body.Length > 0)
            {
                request.Content = new StringContent(Substitute(body, variables, named), Encoding.UTF8, "application/json");
            }

            foreach (var (header, value) in headers.Where(h => h.Item1 != "Content-Type"))
            {
                request.Headers.TryAddWithoutValidation(header, value);
            }

            using var response = await http.SendAsync(request);
            var answer = await response.Content.ReadAsStringAsync();
            var expected = title.Contains("409") ? 409 : title.Contains("412") && !title.Contains("(a stale") ? 412 : 200;
            Assert.True(
                expected == 200 ? response.IsSuccessStatusCode : (int)response.StatusCode == expected,
                $"'{title}' ({requestLine[0]} {requestLine[1]}) answered {(int)response.StatusCode}: {answer}");
            if (name is not null)
            {
                named[name] = (answer.Length == 0 ? null : JsonNode.Parse(answer), response.Headers);
            }
        }
    }

    private static string Substitute(string text, Dictionary<string, string> variables, Dictionary<string, (JsonNode? Body, HttpResponseHeaders Headers)> named) =>
        Reference().Replace(text, match =>
        {
            var expression = match.Groups[1].Value;
            if (variables.TryGetValue(expression, out var value))
            {
                return value;
            }

            var parts = expression.Split('.');
            var (body, headers) = named[parts[0]];
            return parts[2] switch
            {
                "body" => body![parts[4]]!.ToString(),
                "headers" => headers.GetValues(parts[3]).Single(),
                _ => throw new InvalidOperationException($"unknown reference {expression}"),
            };
        });

    [GeneratedRegex(@"^# @name (\w+)")]
    private static partial Regex NameLine();

    [GeneratedRegex(@"\{\{([^}]+)\}\}")]
    private static partial Regex Reference();
}
