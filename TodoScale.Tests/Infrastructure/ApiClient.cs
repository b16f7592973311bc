using Aspire.Hosting;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using TodoScale.ServiceDefaults.Auth;

namespace TodoScale.Tests.Infrastructure;

/// <summary>One user's view of the API of a started AppHost: a real HTTP client with that user's bearer token.</summary>
public sealed class ApiClient : IDisposable
{
    public const string ReadSourceHeader = "X-TodoScale-Read";
    public const string SessionHeader = "TodoScale-Session";

    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);
    private readonly HttpClient _http;

    private ApiClient(HttpClient http, Guid userId)
    {
        _http = http;
        UserId = userId;
    }

    public Guid UserId { get; }

    /// <summary>When set, sent as the TodoScale-Session header with every request (the client's session position).</summary>
    public string? Session { get; set; }

    /// <summary>A client for a new user (a fresh UUIDv7), so no test ever sees another test's rows.</summary>
    public static ApiClient ForNewUser(AppHostFixture fixture, Guid? userId = null, bool admin = false) =>
        ForNewUser(fixture.App, fixture.DataRoot, userId, admin);

    /// <summary>A client of the API of a stack the test started itself on <paramref name="dataRoot"/>.</summary>
    public static ApiClient ForNewUser(DistributedApplication app, string dataRoot, Guid? userId = null, bool admin = false) =>
        For(app.CreateHttpClient("api", "http"), dataRoot, userId ?? Guid.CreateVersion7(), admin);

    /// <summary>A client of an API the test runs itself at <paramref name="baseAddress"/>, signed with the stack's key.</summary>
    public static ApiClient ForUserAt(Uri baseAddress, string dataRoot, Guid userId) =>
        For(new HttpClient { BaseAddress = baseAddress }, dataRoot, userId, admin: false);

    private static ApiClient For(HttpClient http, string dataRoot, Guid user, bool admin)
    {
        var key = File.ReadAllText(Path.Combine(dataRoot, "auth-signing.key")).Trim();
        var token = TodoScaleTokens.Create(new AuthOptions { SigningKey = key }, user, admin, DateTimeOffset.UtcNow, TimeSpan.FromHours(1));
        http.Timeout = RequestTimeout;
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        return new ApiClient(http, user);
    }

    public Task<Reply> GetAsync(string path) => SendAsync(HttpMethod.Get, path);

    public Task<Reply> PostAsync(string path, object? body = null, string? ifMatch = null) => SendAsync(HttpMethod.Post, path, body, ifMatch);

    public Task<Reply> PatchAsync(string path, object? body, string? ifMatch = null) => SendAsync(HttpMethod.Patch, path, body, ifMatch);

    public Task<Reply> DeleteAsync(string path, string? ifMatch = null) => SendAsync(HttpMethod.Delete, path, null, ifMatch);

    /// <summary>Sends a body as given: an object is serialized, a string is sent as raw JSON text.</summary>
    public async Task<Reply> SendAsync(HttpMethod method, string path, object? body = null, string? ifMatch = null)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is string raw)
        {
            request.Content = new StringContent(raw, Encoding.UTF8, "application/json");
        }
        else if (body is not null)
        {
            request.Content = JsonContent.Create(body, body.GetType());
        }

        if (ifMatch is not null)
        {
            request.Headers.TryAddWithoutValidation("If-Match", ifMatch);
        }

        if (Session is not null)
        {
            request.Headers.TryAddWithoutValidation(SessionHeader, Session);
        }

        using var response = await _http.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();
        return new Reply(
            response.StatusCode,
            text.Length == 0 ? null : JsonNode.Parse(text),
            response.Content.Headers.ContentType?.MediaType,
            response.Headers.ETag?.ToString(),
            response.Headers.TryGetValues(ReadSourceHeader, out var source) ? source.Single() : null,
            text)
        {
            Session = response.Headers.TryGetValues(SessionHeader, out var session) ? session.Single() : null,
        };
    }

    /// <summary>Creates a todo and returns its id (fails the test on anything but 201).</summary>
    public async Task<Guid> CreateTodoAsync(string title, object? extra = null, Guid? parent = null)
    {
        var body = new JsonObject { ["title"] = title };
        if (extra is not null)
        {
            foreach (var (name, value) in JsonSerializer.SerializeToNode(extra, JsonSerializerOptions.Web)!.AsObject())
            {
                body[name] = value?.DeepClone();
            }
        }

        var reply = await PostAsync(parent is null ? "/api/todos" : $"/api/todos/{parent}/subtasks", body.ToJsonString());
        reply.Is(HttpStatusCode.Created);
        return reply.Id;
    }

    public void Dispose() => _http.Dispose();
}

/// <summary>An API response, read whole.</summary>
public sealed record Reply(HttpStatusCode Status, JsonNode? Body, string? MediaType, string? ETag, string? ReadSource, string Text)
{
    /// <summary>The TodoScale-Session position the API answered with, if any.</summary>
    public string? Session { get; init; }

    public Reply Is(HttpStatusCode expected)
    {
        Assert.True(Status == expected, $"expected {(int)expected} {expected}, got {(int)Status} {Status}: {Text}");
        return this;
    }

    /// <summary>A ProblemDetails with this status (application/problem+json).</summary>
    public Reply IsProblem(HttpStatusCode expected)
    {
        Is(expected);
        Assert.Equal("application/problem+json", MediaType);
        Assert.Equal((int)expected, Body!["status"]!.GetValue<int>());
        return this;
    }

    /// <summary>A 400 ValidationProblem naming <paramref name="field"/> among its errors.</summary>
    public Reply NamesField(string field)
    {
        IsProblem(HttpStatusCode.BadRequest);
        var errors = Body!["errors"]?.AsObject();
        Assert.True(errors is not null && errors.ContainsKey(field), $"expected an error for '{field}': {Text}");
        return this;
    }

    public Guid Id => Body!["id"]!.GetValue<Guid>();

    public JsonArray Items => Body!["items"]!.AsArray();

    public string? NextCursor => Body!["nextCursor"]?.GetValue<string>();

    public List<Guid> ItemIds => Items.Select(i => i!["id"]!.GetValue<Guid>()).ToList();
}
