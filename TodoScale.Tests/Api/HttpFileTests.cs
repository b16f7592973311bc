using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Aspire.Hosting.Testing;
using TodoScale.ServiceDefaults.Auth;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>
/// TodoScale.Api.http runs top to bottom against the real API, each request answering as its comment says; the
/// OpenAPI document's examples are the file's: each request example is one of its bodies, each response example has
/// the shape and the values (ids and times aside) of an answer the API gave, and every response header the document
/// declares for an answer came with it.
/// </summary>
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
        var exchanges = new List<Exchange>();

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

            exchanges.Add(new Exchange(
                requestLine[0], new Uri(requestLine[1]).AbsolutePath, body.Length > 0 ? JsonNode.Parse(body) : null, (int)response.StatusCode,
                answer.Length > 0 && response.Content.Headers.ContentType?.MediaType == "application/json" ? JsonNode.Parse(answer) : null,
                [.. response.Headers.Select(h => h.Key), .. response.Content.Headers.Select(h => h.Key)]));
        }

        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var failures = new List<string>();
        var examples = 0;
        foreach (var (path, methods) in document["paths"]!.AsObject())
        {
            var template = new Regex("^" + Regex.Replace(Regex.Escape(path), @"\\{[^}]+}", "[^/]+") + "$");
            foreach (var (method, operation) in methods!.AsObject())
            {
                var name = $"{operation!["operationId"]} ({method.ToUpperInvariant()} {path})";
                var sent = exchanges.Where(e => e.Method.Equals(method, StringComparison.OrdinalIgnoreCase) && template.IsMatch(e.Path)).ToList();
                if (operation["requestBody"]?["content"]?["application/json"]?["example"] is { } request)
                {
                    examples++;
                    if (!sent.Any(e => e.Body is not null && SameRequest(e.Body, request)))
                    {
                        failures.Add($"{name}: the request example {request.ToJsonString()} is none of the file's bodies");
                    }
                }

                foreach (var (status, response) in operation["responses"]!.AsObject())
                {
                    if (response!["content"]?["application/json"]?["example"] is { } example)
                    {
                        examples++;
                        var answers = sent.Where(e => e.Status.ToString() == status && e.Answer is not null).ToList();
                        var differences = answers.Select(e => Difference(example, e.Answer!, "$")).ToList();
                        if (!differences.Contains(null))
                        {
                            failures.Add($"{name}: the {status} example matches none of the {answers.Count} answers ({string.Join("; ", differences)})");
                        }
                    }

                    foreach (var exchange in sent.Where(e => e.Status.ToString() == status))
                    {
                        foreach (var (header, _) in response["headers"]?.AsObject() ?? [])
                        {
                            if (!exchange.Headers.Contains(header, StringComparer.OrdinalIgnoreCase) && header != "Retry-After")
                            {
                                failures.Add($"{name}: the {status} answer to {exchange.Path} has no {header} header, which the document declares");
                            }
                        }
                    }
                }
            }
        }

        Assert.True(examples >= 15, $"only {examples} examples in the document");
        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }

    /// <summary>One request of the file as sent (its body with the file's references unresolved) and what came back.</summary>
    private sealed record Exchange(string Method, string Path, JsonNode? Body, int Status, JsonNode? Answer, IReadOnlyList<string> Headers);

    /// <summary>Fields whose values differ from run to run (ids, times, cursors): only their presence and nullness are compared.</summary>
    private static readonly HashSet<string> Volatile = ["id", "userId", "parentId", "projectId", "todoId", "interactionId", "createdAt", "updatedAt", "completedAt", "nextCursor"];

    /// <summary>The file's body equals the example, a `{{reference}}` in the file standing for whatever value the example gives.</summary>
    private static bool SameRequest(JsonNode file, JsonNode example) => (file, example) switch
    {
        (JsonValue value, _) when value.TryGetValue<string>(out var text) && Reference().IsMatch(text) => example is JsonValue,
        (JsonObject a, JsonObject b) => a.Count == b.Count && a.All(p => b.TryGetPropertyValue(p.Key, out var other) && (p.Value, other) switch
        {
            (null, null) => true,
            ({ } x, { } y) => SameRequest(x, y),
            _ => false,
        }),
        (JsonArray a, JsonArray b) => a.Count == b.Count && a.Zip(b).All(p => p.First is not null && p.Second is not null && SameRequest(p.First, p.Second)),
        _ => JsonNode.DeepEquals(file, example),
    };

    /// <summary>Where the example differs from the real answer (null when it does not): the same members, the same values but for <see cref="Volatile"/> ones.</summary>
    private static string? Difference(JsonNode? example, JsonNode? answer, string at)
    {
        switch (example, answer)
        {
            case (null, null):
                return null;
            case (JsonObject a, JsonObject b):
                var keys = a.Select(p => p.Key).Order().ToList();
                if (!keys.SequenceEqual(b.Select(p => p.Key).Order()))
                {
                    return $"{at} has members {string.Join(",", keys)} in the example, {string.Join(",", b.Select(p => p.Key).Order())} in the answer";
                }

                return a.Select(p => Volatile.Contains(p.Key)
                        ? (p.Value is null) == (b[p.Key] is null) ? null : $"{at}.{p.Key} is {(p.Value is null ? "null" : "set")} in the example only"
                        : Difference(p.Value, b[p.Key], $"{at}.{p.Key}"))
                    .FirstOrDefault(d => d is not null);
            case (JsonArray a, JsonArray b):
                return a.Count != b.Count
                    ? $"{at} has {a.Count} items in the example, {b.Count} in the answer"
                    : a.Zip(b).Select((p, i) => Difference(p.First, p.Second, $"{at}[{i}]")).FirstOrDefault(d => d is not null);
            case (JsonValue a, JsonValue b) when a.TryGetValue<DateTimeOffset>(out var x) && b.TryGetValue<DateTimeOffset>(out var y):
                return x == y ? null : $"{at} is {x:O} in the example, {y:O} in the answer";
            default:
                return JsonNode.DeepEquals(example, answer) ? null : $"{at} is {example?.ToJsonString()} in the example, {answer?.ToJsonString()} in the answer";
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
