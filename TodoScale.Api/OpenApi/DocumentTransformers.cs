using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace TodoScale.Api.OpenApi;

/// <summary>
/// The document's title, the rules every operation keeps (shown at the top of the browsable UI), and the bearer
/// scheme, so the UI's Authentication box sends a token from the `token` verb. Which operations need which scope
/// is said per operation (<see cref="OperationConventions"/>).
/// </summary>
internal sealed class DocumentInfoTransformer : IOpenApiDocumentTransformer
{
    public const string SchemeName = "Bearer";

    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        document.Info.Title = "TodoScale API";
        document.Info.Description =
            """
            Todos with nested subtasks, projects, and AI interactions, for one user per bearer token.

            **Authentication.** Every operation needs `Authorization: Bearer <token>`: an HS256 JWT whose `sub` is
            your user id (in development: `dotnet run --project TodoScale.Archiver --no-launch-profile -- token --user <uuid>`;
            `--admin` adds the `admin` scope the operator operations need). You see only your own data: another
            user's todo, project or interaction is a 404, never a 403.

            **Errors** are `application/problem+json` (RFC 9457). A 400 is a validation problem whose `errors` name
            each field or parameter as sent (`subtasks[2].title`, `due_before`). 429 (over your request budget) and
            503 (the database is restarting or unreachable) carry `Retry-After`.

            **Versions.** A single todo or project answers with an `ETag`; send it back as `If-Match` on a write and
            the write fails with 412, changing nothing, if someone changed the row since.

            **Read-your-writes.** Reads may be served by a cache or a read replica, but never one that misses a write
            you made: the `X-TodoScale-Read` header says which served (`cache`, `replica`, `primary`). Send back the
            `TodoScale-Session` header of your last answer to keep that promise across API instances without a
            Redis round trip.
            """;
        document.Components ??= new OpenApiComponents();
        document.Components.SecuritySchemes ??= new Dictionary<string, IOpenApiSecurityScheme>();
        document.Components.SecuritySchemes[SchemeName] = new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            BearerFormat = "JWT",
            Description = "A TodoScale token: `token --user <uuid>` (add `--admin` for the operator operations).",
        };
        return Task.CompletedTask;
    }
}
