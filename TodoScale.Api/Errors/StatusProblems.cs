using System.Reflection;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.Mvc;

namespace TodoScale.Api.Errors;

/// <summary>
/// A ProblemDetails answer whose status is part of its type. ASP.NET Core's <see cref="ProblemHttpResult"/> decides
/// its status at run time, so an endpoint returning one declares nothing; these declare theirs the way
/// <see cref="ValidationProblem"/> declares its 400: a handler's <c>Results&lt;..., ConflictProblem&gt;</c> puts
/// "409, application/problem+json" into the OpenAPI document, and the document test reads the same statuses back
/// from the signature (each type's <c>Status</c> constant).
/// </summary>
public abstract class StatusProblem : IResult, IStatusCodeHttpResult, IValueHttpResult, IValueHttpResult<ProblemDetails>, IContentTypeHttpResult
{
    public const string ContentTypeName = "application/problem+json";

    private readonly ProblemHttpResult _result;

    private protected StatusProblem(int status, string title, string detail) =>
        _result = TypedResults.Problem(statusCode: status, title: title, detail: detail);

    public ProblemDetails ProblemDetails => _result.ProblemDetails;

    public int? StatusCode => _result.StatusCode;

    public string? ContentType => _result.ContentType;

    object? IValueHttpResult.Value => ProblemDetails;

    ProblemDetails? IValueHttpResult<ProblemDetails>.Value => ProblemDetails;

    public Task ExecuteAsync(HttpContext httpContext) => _result.ExecuteAsync(httpContext);

    private protected static void Declare(EndpointBuilder builder, int status) =>
        builder.Metadata.Add(new ProducesResponseTypeMetadata(status, typeof(ProblemDetails), [ContentTypeName]));
}

/// <summary>404: the caller has no such todo, project, parent or interaction (someone else's is not found either).</summary>
public sealed class NotFoundProblem(string detail) : StatusProblem(Status, "Not Found", detail), IEndpointMetadataProvider
{
    public const int Status = StatusCodes.Status404NotFound;

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, Status);
}

/// <summary>409: the change breaks a rule of the data as it stands (open subtasks, a cycle, the depth limit, a taken name).</summary>
public sealed class ConflictProblem(string detail) : StatusProblem(Status, "Conflict", detail), IEndpointMetadataProvider
{
    public const int Status = StatusCodes.Status409Conflict;

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, Status);
}

/// <summary>412: If-Match names a version the row no longer has.</summary>
public sealed class PreconditionFailedProblem(string detail) : StatusProblem(Status, "Precondition Failed", detail), IEndpointMetadataProvider
{
    public const int Status = StatusCodes.Status412PreconditionFailed;

    public static void PopulateMetadata(MethodInfo method, EndpointBuilder builder) => Declare(builder, Status);
}
