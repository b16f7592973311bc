using System.Collections.Concurrent;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using CsCheck;
using Npgsql;
using TodoScale.ServiceDefaults.Auth;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Api;

/// <summary>
/// A property over the whole API, driven by its own OpenAPI document and CsCheck's generators: 10,000 bad requests
/// (wrong types, NUL bytes, lone surrogates, 100k-character strings, broken JSON, unknown fields, other users' and
/// unknown ids, missing, garbage, expired, foreign-key and alg:none tokens) sent to the test stack over loopback,
/// one at a time. For every one: no 5xx; every 4xx is application/problem+json; and a write that was refused
/// changed nothing of the two users' rows (a checksum of their todos, projects and AI interactions).
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class FuzzTests(AppHostFixture fixture, ITestOutputHelper output)
{
    private const int Requests = 10_000;

    /// <summary>The whole property's hang guard (a run takes about 30 s here), not a speed expectation.</summary>
    private static readonly TimeSpan Bound = TimeSpan.FromMinutes(5);

    private static readonly string[] Writes = ["POST", "PATCH", "PUT", "DELETE"];

    /// <summary>One operation of the OpenAPI document: its path template, query parameters and body properties.</summary>
    private sealed record Operation(string Method, string Path, string[] Query, (string Name, JsonNode Schema)[] Body);

    /// <summary>What is sent: an operation, who sends it, the path id, the query and the body (raw text or none).</summary>
    private sealed record FuzzRequest(Operation Operation, int Auth, string Id, string QueryString, string? Body, string ContentType)
    {
        public override string ToString() =>
            $"{Operation.Method} {Operation.Path.Replace("{id}", Id)}{QueryString} auth={Auth} [{ContentType}] {(Body is null ? "" : Body.Length > 300 ? Body[..300] + "..." : Body)}";
    }

    [Fact]
    public async Task Ten_thousand_bad_requests_get_no_5xx_only_problem_json_4xx_and_change_nothing_they_refuse()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        http.Timeout = TimeSpan.FromSeconds(30);
        var operations = await OperationsAsync(http);
        Assert.True(operations.Length >= 15, $"the OpenAPI document lists {operations.Length} operations");

        var key = (await File.ReadAllTextAsync(Path.Combine(fixture.DataRoot, "auth-signing.key"))).Trim();
        var (userA, userB) = (Guid.CreateVersion7(), Guid.CreateVersion7());
        var now = DateTimeOffset.UtcNow;
        var tokens = new[]
        {
            TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, userA, admin: false, now, TimeSpan.FromHours(2)),
            TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, userB, admin: false, now, TimeSpan.FromHours(2)),
            null,
            "not-a-token",
            AlgNone(userA),
            TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, userA, admin: false, now.AddHours(-3), TimeSpan.FromHours(1)),
            TodoScaleTokens.Create(new AuthOptions { SigningKey = Convert.ToHexString(new byte[32]) }, userA, admin: true, now, TimeSpan.FromHours(2)),
        };

        // User A owns a few todos (a tree), a project and an AI interaction; user B owns one todo.
        var ownIds = new List<string>();
        using (var a = ApiClientFor(http, tokens[0]!))
        {
            for (var i = 0; i < 20; i++)
            {
                ownIds.Add((await SendAsync(a, HttpMethod.Post, "/api/todos", $$"""{"title":"fuzz {{i}}"}""", "application/json")).Id!);
            }

            ownIds.Add((await SendAsync(a, HttpMethod.Post, $"/api/todos/{ownIds[0]}/subtasks", """{"title":"child"}""", "application/json")).Id!);
            ownIds.Add((await SendAsync(a, HttpMethod.Post, "/api/projects", """{"name":"fuzz project"}""", "application/json")).Id!);
            await SendAsync(a, HttpMethod.Post, $"/api/todos/{ownIds[1]}/ai-interactions", """{"kind":"generate_subtasks","model":"m","prompt":"p"}""", "application/json");
        }

        string otherId;
        using (var b = ApiClientFor(http, tokens[1]!))
        {
            otherId = (await SendAsync(b, HttpMethod.Post, "/api/todos", """{"title":"B's own"}""", "application/json")).Id!;
        }

        var primary = (await fixture.App.GetConnectionStringAsync("todos"))!;
        await using var database = new NpgsqlConnection(primary);
        await database.OpenAsync();
        var fingerprint = await FingerprintAsync(database, userA, userB);

        var statuses = new ConcurrentDictionary<int, int>();
        var refusedWrites = 0;
        var elapsed = System.Diagnostics.Stopwatch.StartNew();
        await Gen(operations, ownIds, otherId).SampleAsync(async request =>
        {
            Assert.True(elapsed.Elapsed < Bound, $"the property ran past its bound of {Bound} after {statuses.Values.Sum()} requests");
            using var message = new HttpRequestMessage(new HttpMethod(request.Operation.Method),
                request.Operation.Path.Replace("{id}", request.Id, StringComparison.Ordinal) + request.QueryString);
            if (tokens[request.Auth] is { } token)
            {
                message.Headers.TryAddWithoutValidation("Authorization", "Bearer " + token);
            }

            if (request.Body is not null)
            {
                message.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(request.Body));
                message.Content.Headers.TryAddWithoutValidation("Content-Type", request.ContentType);
            }

            using var response = await http.SendAsync(message);
            var status = (int)response.StatusCode;
            statuses.AddOrUpdate(status, 1, (_, n) => n + 1);
            var text = await response.Content.ReadAsStringAsync();
            Assert.True(status < 500, $"{status} for {request}: {text}");
            if (status >= 400)
            {
                Assert.True(response.Content.Headers.ContentType?.MediaType == "application/problem+json",
                    $"{status} for {request} is '{response.Content.Headers.ContentType}': {text}");
            }

            if (Writes.Contains(request.Operation.Method))
            {
                var after = await FingerprintAsync(database, userA, userB);
                if (status >= 400)
                {
                    Interlocked.Increment(ref refusedWrites);
                    Assert.True(after == fingerprint, $"the refused {request} ({status}) changed the users' rows");
                }

                fingerprint = after;
            }
        }, iter: Requests, threads: 1, print: request => request.ToString());

        output.WriteLine($"{statuses.Values.Sum():N0} requests: {string.Join(", ", statuses.OrderBy(s => s.Key).Select(s => $"{s.Key} x{s.Value:N0}"))}; {refusedWrites:N0} refused writes, each changing nothing");
        Assert.Equal(Requests, statuses.Values.Sum());
        Assert.DoesNotContain(statuses.Keys, s => s >= 500);
    }

    /// <summary>The generator: an operation, an identity, a path id, a query and a body, each mostly wrong in some way.</summary>
    private static Gen<FuzzRequest> Gen(Operation[] operations, List<string> ownIds, string otherId)
    {
        var text = CsCheck.Gen.Frequency(
            (4, CsCheck.Gen.String),
            (2, CsCheck.Gen.OneOf("\0", "a\0b", "\uD800", "x\uDFFFy", "\u202E\u0301", "' OR 1=1 --", "%00", "../../etc/passwd", "null", "", " ")),
            (1, CsCheck.Gen.Int[1_000, 100_000].Select(n => new string('x', n))),
            (1, CsCheck.Gen.Int.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture))),
            (1, CsCheck.Gen.Guid.Select(g => g.ToString())));
        var value = CsCheck.Gen.Frequency(
            (5, text.Select(s => (JsonNode?)JsonValue.Create(s))),
            (2, CsCheck.Gen.Long.Select(l => (JsonNode?)JsonValue.Create(l))),
            (1, CsCheck.Gen.Double.Select(d => (JsonNode?)(double.IsFinite(d) ? JsonValue.Create(d) : JsonValue.Create(0.5)))),
            (1, CsCheck.Gen.Bool.Select(b => (JsonNode?)JsonValue.Create(b))),
            (1, CsCheck.Gen.Const(() => (JsonNode?)null)),
            (1, text.Select(s => (JsonNode?)new JsonArray(JsonValue.Create(s), new JsonObject { ["title"] = s }))),
            (1, text.Select(s => (JsonNode?)new JsonObject { ["title"] = s, ["nested"] = new JsonObject { ["x"] = s } })));
        var id = CsCheck.Gen.Frequency(
            (4, CsCheck.Gen.Int[0, ownIds.Count - 1].Select(i => ownIds[i])),
            (2, CsCheck.Gen.Const(otherId)),
            (2, CsCheck.Gen.Guid.Select(g => g.ToString())),
            // Garbage ids without control characters: Kestrel refuses those in a path itself (ServerLimitsTests).
            (2, text.Select(s => Uri.EscapeDataString(new string([.. s.Where(c => c >= ' ' && !char.IsSurrogate(c)).Take(200)])) is { Length: > 0 } e ? e : "x")));
        var query = CsCheck.Gen.Int[0, 3].SelectMany(count => CsCheck.Gen.Select(CsCheck.Gen.Int[0, 99].Array[count], text.Array[count], (names, values) => (names, values)));
        var body = CsCheck.Gen.Frequency(
            (6, CsCheck.Gen.Select(CsCheck.Gen.Int[0, 99], value, CsCheck.Gen.Int[0, 3], (field, v, mode) => (Kind: 0, field, v, mode, raw: ""))),
            (1, CsCheck.Gen.OneOf("{", "[]", "{\"title\":", "not json", "{\"title\":\"a\"}}", "\"just a string\"", "{\"title\":\"\\ud800\"}", "{\"a\":" + new string('[', 500))
                .Select(raw => (Kind: 1, field: 0, v: (JsonNode?)null, mode: 0, raw))),
            (1, CsCheck.Gen.Const((Kind: 2, field: 0, v: (JsonNode?)null, mode: 0, raw: ""))));
        var auth = CsCheck.Gen.Frequency((10, CsCheck.Gen.Const(0)), (2, CsCheck.Gen.Const(1)), (1, CsCheck.Gen.Int[2, 6]));
        var contentType = CsCheck.Gen.Frequency((12, CsCheck.Gen.Const("application/json")), (1, CsCheck.Gen.OneOf("text/plain", "application/xml", "application/json; charset=latin1", "")));

        return CsCheck.Gen.Select(CsCheck.Gen.Int[0, operations.Length - 1], auth, id, query, body, contentType, (o, who, path, q, b, type) =>
        {
            var operation = operations[o];
            var queryString = q.names.Length == 0 || operation.Query.Length == 0
                ? ""
                : "?" + string.Join('&', q.names.Select((n, i) =>
                    $"{operation.Query[n % operation.Query.Length]}={Uri.EscapeDataString(new string([.. q.values[i].Where(c => !char.IsSurrogate(c)).Take(2_000)]))}"));
            string? text = null;
            if (operation.Body.Length > 0 || Writes.Contains(operation.Method))
            {
                text = b.Kind switch
                {
                    1 => b.raw,
                    2 => null,
                    _ => Mutate(operation, b.field, b.v, b.mode, ownIds),
                };
            }

            return new FuzzRequest(operation, who, path, queryString, text, type);
        });
    }

    /// <summary>A valid body for the operation with one field changed: set to <paramref name="value"/>, removed, or an unknown field added.</summary>
    private static string Mutate(Operation operation, int field, JsonNode? value, int mode, List<string> ownIds)
    {
        var body = new JsonObject();
        foreach (var (name, schema) in operation.Body)
        {
            body[name] = Valid(name, schema, ownIds);
        }

        if (operation.Body.Length == 0 || mode == 3)
        {
            body[$"unknown{field}"] = value?.DeepClone();
        }
        else
        {
            var name = operation.Body[field % operation.Body.Length].Name;
            if (mode == 2)
            {
                body.Remove(name);
            }
            else
            {
                body[name] = value?.DeepClone();
            }
        }

        return body.ToJsonString();
    }

    private static JsonNode? Valid(string name, JsonNode schema, List<string> ownIds)
    {
        var types = schema["type"] is JsonArray array ? array.Select(t => t!.GetValue<string>()).ToArray() : [schema["type"]?.GetValue<string>() ?? "object"];
        return (types.FirstOrDefault(t => t != "null"), schema["format"]?.GetValue<string>()) switch
        {
            ("string", "uuid") => name == "projectId" || name == "interactionId" ? null : JsonValue.Create(ownIds[0]),
            ("string", "date-time") => JsonValue.Create(DateTimeOffset.UtcNow.AddDays(30)),
            ("string", _) when name == "kind" => JsonValue.Create("generate_subtasks"),
            ("string", _) when name == "status" => JsonValue.Create("todo"),
            ("string", _) => JsonValue.Create("fuzz " + name),
            ("integer", _) => JsonValue.Create(3),
            ("boolean", _) => JsonValue.Create(false),
            ("array", _) => new JsonArray(new JsonObject { ["title"] = "fuzz subtask" }),
            _ => null,
        };
    }

    private static async Task<Operation[]> OperationsAsync(HttpClient http)
    {
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var schemas = document["components"]!["schemas"]!;
        var operations = new List<Operation>();
        foreach (var (path, methods) in document["paths"]!.AsObject())
        {
            foreach (var (method, operation) in methods!.AsObject())
            {
                var query = (operation!["parameters"]?.AsArray() ?? []).Where(p => p!["in"]!.GetValue<string>() == "query").Select(p => p!["name"]!.GetValue<string>()).ToArray();
                var reference = operation["requestBody"]?["content"]?["application/json"]?["schema"]?["$ref"]?.GetValue<string>();
                var body = reference is null
                    ? []
                    : schemas[reference.Split('/')[^1]]!["properties"]!.AsObject().Select(p => (p.Key, p.Value!)).ToArray();
                operations.Add(new Operation(method.ToUpperInvariant(), path, query, body));
            }
        }

        return [.. operations];
    }

    /// <summary>Every row of the two users' todos, projects and AI interactions, as one checksum.</summary>
    private static async Task<string> FingerprintAsync(NpgsqlConnection connection, Guid a, Guid b)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT md5(coalesce(string_agg(r, '|' ORDER BY r), '')) FROM (
                SELECT t::text AS r FROM todos_active t WHERE user_id = ANY(@users)
                UNION ALL SELECT p::text FROM projects p WHERE user_id = ANY(@users)
                UNION ALL SELECT i::text FROM ai_interactions i WHERE user_id = ANY(@users)) rows
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("users", [a, b]));
        return (string)(await command.ExecuteScalarAsync())!;
    }

    private static string AlgNone(Guid user)
    {
        static string Part(string json) => Convert.ToBase64String(Encoding.UTF8.GetBytes(json)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        var now = DateTimeOffset.UtcNow.ToUnixTimeSeconds();
        return $"{Part("""{"alg":"none","typ":"JWT"}""")}.{Part($$"""{"sub":"{{user}}","iss":"todoscale","aud":"todoscale-api","iat":{{now}},"exp":{{now + 7200}}}""")}.";
    }

    private static HttpClient ApiClientFor(HttpClient http, string token)
    {
        var client = new HttpClient { BaseAddress = http.BaseAddress, Timeout = http.Timeout };
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return client;
    }

    private static async Task<(int Status, string? Id)> SendAsync(HttpClient client, HttpMethod method, string path, string body, string contentType)
    {
        using var response = await client.SendAsync(new HttpRequestMessage(method, path) { Content = new StringContent(body, Encoding.UTF8, contentType) });
        var text = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{method} {path}: {(int)response.StatusCode} {text}");
        return ((int)response.StatusCode, JsonNode.Parse(text)?["id"]?.GetValue<string>());
    }
}
