using Microsoft.AspNetCore.Mvc;
using NpgsqlTypes;

namespace TodoScale.Api.Reads;

/// <summary>
/// Session consistency carried by the client, as Cosmos DB's session token is: every read and write answers with
/// <c>TodoScale-Session: &lt;position&gt;</c> (a PostgreSQL WAL position, e.g. <c>0/3A1B2C8</c>), the newest commit
/// this client has been shown, and a client that sends it back on its next request is routed by it alone.
/// <list type="bullet">
/// <item>Exact across API instances for that client: the position travels with it, so the instance that serves the
/// next read needs neither its own memory of the write nor Redis; a replica that has not replayed up to it gets no
/// read.</item>
/// <item>What it saves: the Redis round trip before every read that does not look up a cached page (the page cache
/// off, later pages, single todos). Without the header a read asks Redis for the user's last write, as before.</item>
/// <item>What it covers: the writes this client made or was shown. A write by the same user from another device
/// that this client has not been shown may be missing from its reads until the replica replays it (under
/// <c>Reads:ReplicaLagLimit</c>); a client that wants every device's writes sends no header.</item>
/// <item>A position the client made up only moves its own reads: a larger one to the primary, a smaller one to a
/// replica that may lack the client's own writes. A write whose commit position could not be read answers
/// <see cref="Unknown"/>, which routes like no header at all.</item>
/// </list>
/// </summary>
public sealed class ClientSession
{
    public const string Header = "TodoScale-Session";

    /// <summary>The position a write answers with when its commit position could not be read.</summary>
    public const ulong Unknown = ulong.MaxValue;

    private ulong _shown;
    private bool _answers;

    private ClientSession(ulong? carried) => Carried = carried;

    /// <summary>The position the client sent back, when it sent one that routes (not <see cref="Unknown"/>).</summary>
    public ulong? Carried { get; }

    /// <summary>The request's session; none outside a request.</summary>
    public static ClientSession? Of(HttpContext? context) => context?.Features.Get<ClientSession>();

    /// <summary>Records a position this response shows the client (a read's view of the user, a write's commit).</summary>
    public void Shown(ulong position)
    {
        _answers = true;
        if (position > _shown)
        {
            _shown = position;
        }
    }

    /// <summary>Parses the request's header, refusing a malformed one, and answers with the session's newest position.</summary>
    internal static IApplicationBuilder Use(IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        ulong? carried = null;
        if (context.Request.Headers.TryGetValue(Header, out var values))
        {
            if (values.Count != 1 || values[0] is not { } text || !NpgsqlLogSequenceNumber.TryParse(text, out var position))
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.RequestServices.GetRequiredService<IProblemDetailsService>().WriteAsync(new ProblemDetailsContext
                {
                    HttpContext = context,
                    ProblemDetails = new ProblemDetails
                    {
                        Status = StatusCodes.Status400BadRequest,
                        Title = $"The {Header} header is not a session position.",
                        Detail = $"Send back the {Header} value of an earlier answer exactly as it came (a WAL position such as 0/3A1B2C8), once, or leave the header out.",
                    },
                });
                return;
            }

            carried = (ulong)position == Unknown ? null : (ulong)position;
        }

        var session = new ClientSession(carried);
        context.Features.Set(session);
        context.Response.OnStarting(() =>
        {
            if (session._answers)
            {
                context.Response.Headers[Header] = ((NpgsqlLogSequenceNumber)Math.Max(session._shown, session.Carried ?? 0)).ToString();
            }

            return Task.CompletedTask;
        });
        await next(context);
    });
}

public static class ClientSessionExtensions
{
    /// <summary>Reads <c>TodoScale-Session</c> from each request and answers with it (<see cref="ClientSession"/>).</summary>
    public static IApplicationBuilder UseClientSessions(this IApplicationBuilder app) => ClientSession.Use(app);
}
