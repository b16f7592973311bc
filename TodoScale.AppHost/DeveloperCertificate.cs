using System.Security.Cryptography.X509Certificates;
using Microsoft.Extensions.Configuration;

namespace TodoScale.AppHost;

/// <summary>
/// The dashboard over HTTPS (the default launch profile) needs the ASP.NET Core developer certificate. Without one,
/// Kestrel aborts the AppHost with a stack trace; this says what to do instead, before anything starts.
/// </summary>
internal static class DeveloperCertificate
{
    // The extension that marks `dotnet dev-certs https` certificates (what Kestrel and Aspire look for).
    private const string AspNetHttpsOid = "1.3.6.1.4.1.311.84.1.1";

    /// <summary>Null when the dashboard can start; otherwise what is missing and the two ways forward.</summary>
    public static string? MissingFor(IConfiguration configuration)
    {
        var urls = configuration["ASPNETCORE_URLS"] ?? "";
        if (!urls.Contains("https://", StringComparison.OrdinalIgnoreCase)
            || configuration["Kestrel:Certificates:Default:Path"] is not null
            || HasDeveloperCertificate() is not false)
        {
            return null;
        }

        return $"""
            The Aspire dashboard is set to serve HTTPS ({urls}), and this user has no ASP.NET Core developer certificate.
            Either create and trust one:   dotnet dev-certs https --trust
            or start without HTTPS:        dotnet run --project TodoScale.AppHost --launch-profile http   (or ./build.sh run)
            """;
    }

    /// <summary>Whether a current developer certificate with its private key is in the user's store; null when the store cannot be read (Kestrel then decides).</summary>
    private static bool? HasDeveloperCertificate()
    {
        try
        {
            using var store = new X509Store(StoreName.My, StoreLocation.CurrentUser);
            store.Open(OpenFlags.ReadOnly);
            var now = DateTime.Now;
            return store.Certificates.Any(c =>
                c.Extensions.Any(e => e.Oid?.Value == AspNetHttpsOid) && c.NotBefore <= now && now <= c.NotAfter && c.HasPrivateKey);
        }
        catch (Exception e) when (e is System.Security.Cryptography.CryptographicException or PlatformNotSupportedException)
        {
            return null;
        }
    }
}
