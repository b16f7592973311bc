using System.Reflection;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Mvc.ModelBinding;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;
using TodoScale.Api.Apis;
using TodoScale.Api.Contracts;
using TodoScale.Api.Errors;
using TodoScale.Api.Extensions;
using TodoScale.Api.Reads;

namespace TodoScale.Api.OpenApi;

/// <summary>
/// What every operation shares, said on each so a client generator and the UI see it where it applies: the bearer
/// requirement (with the `admin` role on the operator operations); the answers that come from the pipeline rather
/// than the handler (400 for a malformed parameter or session header, 401, 403, 415, 429, 503); every error as
/// application/problem+json; and the headers of the protocol: <c>TodoScale-Session</c> in and out, <c>If-Match</c>
/// where a 412 can come back, <c>ETag</c> on a single todo or project, <c>X-TodoScale-Read</c> on a routed read.
/// </summary>
internal sealed class OperationConventions : IOpenApiOperationTransformer
{
    /// <summary>Bodies that are one versioned row (or a tree rooted at one): the handler sets its ETag.</summary>
    private static readonly HashSet<Type> Versioned = [typeof(TodoDto), typeof(ProjectDto), typeof(TodoTreeDto), typeof(CompleteTodoResponse)];

    public async Task TransformAsync(OpenApiOperation operation, OpenApiOperationTransformerContext context, CancellationToken cancellationToken)
    {
        var metadata = context.Description.ActionDescriptor.EndpointMetadata;
        var policies = metadata.OfType<IAuthorizeData>().Select(a => a.Policy).ToList();
        var handler = metadata.OfType<MethodInfo>().FirstOrDefault();
        var forUser = handler?.GetParameters().Any(p => p.ParameterType == typeof(UserHandlerContext)) ?? false;
        var usesDatabase = forUser || (handler?.GetParameters().Any(p => p.ParameterType == typeof(DatabaseMonitor)) ?? false);
        var problem = await SchemaReferenceAsync(context, typeof(ProblemDetails), cancellationToken);

        if (policies.Count > 0)
        {
            var admin = policies.Contains(Policies.Admin);
            operation.Security = [new OpenApiSecurityRequirement
            {
                [new OpenApiSecuritySchemeReference(DocumentInfoTransformer.SchemeName, context.Document)] = admin ? [Policies.Admin] : [],
            }];
            Add(operation, StatusCodes.Status401Unauthorized, "No bearer token, or one that is not valid (expired, badly signed, no user id).", problem);
            if (admin)
            {
                Add(operation, StatusCodes.Status403Forbidden, "The token does not carry the `admin` scope.", problem);
            }
        }

        // Every request may carry a malformed TodoScale-Session; one with parameters or a body may fail to bind.
        var validation = context.Description.ParameterDescriptions.Count > 0
            ? await SchemaReferenceAsync(context, typeof(HttpValidationProblemDetails), cancellationToken)
            : problem;
        Add(operation, StatusCodes.Status400BadRequest, "A parameter or the `TodoScale-Session` header is malformed; `errors` names the parameter.", validation);
        if (context.Description.ParameterDescriptions.Any(p => p.Source == BindingSource.Body))
        {
            Add(operation, StatusCodes.Status415UnsupportedMediaType, "The body is not sent as `application/json`.", problem);
        }

        Add(operation, StatusCodes.Status429TooManyRequests, "Over your request budget; retry after `Retry-After` seconds.", problem, RetryAfter());
        if (usesDatabase)
        {
            Add(operation, StatusCodes.Status503ServiceUnavailable, "The database is restarting or unreachable; retry after `Retry-After` seconds.", problem, RetryAfter());
        }

        foreach (var (status, response) in operation.Responses ?? [])
        {
            if (status.StartsWith('4') || status.StartsWith('5'))
            {
                if (response is OpenApiResponse { Content: null or { Count: 0 } } bare)
                {
                    bare.Content = new Dictionary<string, OpenApiMediaType> { [StatusProblem.ContentTypeName] = new() { Schema = problem } };
                }
            }
            else if (status.StartsWith('2') && response is OpenApiResponse success)
            {
                success.Headers ??= new Dictionary<string, IOpenApiHeader>();
                if (forUser)
                {
                    success.Headers[ClientSession.Header] = Header(
                        "Your session position (the newest commit this answer shows you, a WAL position such as `0/3A1B2C8`): send it back on your next request.");
                }

                if (forUser && context.Description.HttpMethod == HttpMethods.Get)
                {
                    success.Headers[UserHandlerContext.ReadSourceHeader] = Header(
                        "Which copy served this read: `cache`, `replica` or `primary`. Each holds every write you made.");
                }

                if (context.Description.SupportedResponseTypes.Any(r => r.StatusCode.ToString() == status && r.Type is { } type && Versioned.Contains(type)))
                {
                    success.Headers["ETag"] = Header("The version of the todo or project; send it as `If-Match` to make a write conditional.");
                }
            }
        }

        if (operation.Responses is { } responses)
        {
            // In status order, as a reader looks for them (the handler's first, then the pipeline's, otherwise).
            var sorted = responses.OrderBy(r => r.Key, StringComparer.Ordinal).ToList();
            responses.Clear();
            foreach (var (status, response) in sorted)
            {
                responses[status] = response;
            }
        }

        if (forUser)
        {
            operation.Parameters ??= [];
            operation.Parameters.Add(new OpenApiParameter
            {
                Name = ClientSession.Header,
                In = ParameterLocation.Header,
                Description = "Optional: the `TodoScale-Session` value of your last answer, exactly as it came. Reads then include everything that answer showed, whichever API instance serves them.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                Example = JsonValue.Create("0/3A1B2C8"),
            });
            if (operation.Responses?.ContainsKey(PreconditionFailedProblem.Status.ToString()) == true)
            {
                operation.Parameters.Add(new OpenApiParameter
                {
                    Name = "If-Match",
                    In = ParameterLocation.Header,
                    Description = "Optional: the `ETag` you read. The write happens only if the row still has that version (else 412); `*` or no header: always.",
                    Schema = new OpenApiSchema { Type = JsonSchemaType.String },
                });
            }
        }
    }

    private static void Add(OpenApiOperation operation, int status, string description, IOpenApiSchema schema, Dictionary<string, IOpenApiHeader>? headers = null)
    {
        operation.Responses ??= [];
        if (!operation.Responses.ContainsKey(status.ToString()))
        {
            operation.Responses[status.ToString()] = new OpenApiResponse
            {
                Description = description,
                Content = new Dictionary<string, OpenApiMediaType> { [StatusProblem.ContentTypeName] = new() { Schema = schema } },
                Headers = headers,
            };
        }
    }

    private static Dictionary<string, IOpenApiHeader> RetryAfter() => new()
    {
        ["Retry-After"] = new OpenApiHeader { Description = "Seconds to wait before retrying.", Schema = new OpenApiSchema { Type = JsonSchemaType.Integer } },
    };

    private static OpenApiHeader Header(string description) =>
        new() { Description = description, Schema = new OpenApiSchema { Type = JsonSchemaType.String } };

    /// <summary>The component schema of <paramref name="type"/>, registered once, as a reference.</summary>
    private static async Task<IOpenApiSchema> SchemaReferenceAsync(OpenApiOperationTransformerContext context, Type type, CancellationToken cancellationToken)
    {
        var document = context.Document!;
        document.Components ??= new OpenApiComponents();
        document.Components.Schemas ??= new Dictionary<string, IOpenApiSchema>();
        if (!document.Components.Schemas.ContainsKey(type.Name))
        {
            document.Components.Schemas[type.Name] = await context.GetOrCreateSchemaAsync(type, null, cancellationToken);
        }

        return new OpenApiSchemaReference(type.Name, document);
    }
}
