using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TodoScale.AppHost;

internal static class Announcements
{
    /// <summary>Logs where each user-facing endpoint is once its resource is ready (./build.sh run shows it).</summary>
    public static void AnnounceWhenReady(this IDistributedApplicationBuilder builder, params IResourceBuilder<IResourceWithEndpoints>[] resources)
    {
        foreach (var resource in resources)
        {
            builder.Eventing.Subscribe<ResourceReadyEvent>(resource.Resource, (@event, _) =>
            {
                var endpoint = resource.GetEndpoint("http");
                @event.Services.GetRequiredService<ILoggerFactory>().CreateLogger("TodoScale")
                    .LogInformation("TodoScale {Resource} is ready at {Url}", resource.Resource.Name, endpoint.Url);
                return Task.CompletedTask;
            });
        }
    }
}
