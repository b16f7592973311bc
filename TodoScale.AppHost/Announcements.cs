using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TodoScale.AppHost;

internal static class Announcements
{
    /// <summary>
    /// Logs where each user-facing endpoint is once its resource is ready (./build.sh run shows it): a service's
    /// http endpoint, a server's tcp one (Redis: rediss:// when Aspire serves it over TLS with the developer
    /// certificate, tcp:// otherwise).
    /// </summary>
    public static void AnnounceWhenReady(this IDistributedApplicationBuilder builder, params IResourceWithEndpoints[] resources)
    {
        foreach (var resource in resources)
        {
            builder.Eventing.Subscribe<ResourceReadyEvent>(resource, (@event, _) =>
            {
                var names = resource.Annotations.OfType<EndpointAnnotation>().Select(e => e.Name).ToList();
                var endpoint = resource.GetEndpoint(names.Contains("http") ? "http" : names[0]);
                @event.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TodoScale")
                    .LogInformation("TodoScale {Resource} is ready at {Url}", resource.Name, endpoint.Url);
                return Task.CompletedTask;
            });
        }
    }
}
