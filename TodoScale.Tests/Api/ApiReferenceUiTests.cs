using System.Buffers.Binary;
using System.Net;
using System.Text.Json.Nodes;
using Aspire.Hosting.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Api;

/// <summary>
/// The browsable API reference (Scalar, in Development) as a user's browser shows it: a headless Chromium loads
/// /scalar/ from the running API, runs its scripts, and the rendered page lists every operation by the summary the
/// document gives it, with the bearer scheme in its Authentication box; a screenshot of it is a real picture.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[Collection(AppHostCollection.Name)]
public sealed class ApiReferenceUiTests(AppHostFixture fixture) : IDisposable
{
    private const int Width = 1400;
    private const int Height = 1000;

    /// <summary>Page time for the scripts to fetch the document and render (Chromium's virtual clock: it moves on when the page idles).</summary>
    private static readonly TimeSpan Settle = TimeSpan.FromSeconds(20);

    private readonly string _profile = Directory.CreateTempSubdirectory("todoscale-chromium-").FullName;

    [BrowserFact]
    public async Task The_rendered_reference_lists_every_operation_by_its_summary_and_offers_the_bearer_token_box()
    {
        using var http = fixture.App.CreateHttpClient("api", "http");
        var document = JsonNode.Parse(await http.GetStringAsync("/openapi/v1.json"))!;
        var summaries = document["paths"]!.AsObject()
            .SelectMany(p => p.Value!.AsObject().Select(o => o.Value!["summary"]!.GetValue<string>()))
            .ToList();
        Assert.Equal(20, summaries.Count);
        var page = new Uri(http.BaseAddress!, "/scalar/").ToString();

        var dom = WebUtility.HtmlDecode(await Chromium.DumpDomAsync(page, Path.Combine(_profile, "dom"), Settle));

        var missing = summaries.Where(s => !dom.Contains(s, StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, $"not on the rendered page: {string.Join("; ", missing)}");
        Assert.Contains("Bearer Token", dom);
        Assert.Contains(document["info"]!["title"]!.GetValue<string>(), dom);

        var png = Path.Combine(_profile, "reference.png");
        await Chromium.ScreenshotAsync(page, Path.Combine(_profile, "shot"), Settle, png, Width, Height);
        var bytes = await File.ReadAllBytesAsync(png);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], bytes[..4]);
        Assert.Equal(Width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16, 4))); // IHDR
        Assert.Equal(Height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20, 4)));
        Assert.True(bytes.Length > 50_000, $"the screenshot is {bytes.Length} bytes: a blank page compresses to a few KB");
    }

    public void Dispose() => Directory.Delete(_profile, recursive: true);
}
