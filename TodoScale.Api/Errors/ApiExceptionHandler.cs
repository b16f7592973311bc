using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Diagnostics;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace TodoScale.Api.Errors;

/// <summary>
/// Turns what escapes a handler into ProblemDetails: a body or parameter that does not bind is a 400 naming the
/// field; a database error is mapped by SQLSTATE (never by constraint name: Citus renames them per shard); an
/// unreachable database is a 503, so an outage never looks like "not found" and never like a 500.
/// </summary>
public sealed partial class ApiExceptionHandler(IProblemDetailsService problems, ILogger<ApiExceptionHandler> logger) : IExceptionHandler
{
    public async ValueTask<bool> TryHandleAsync(HttpContext context, Exception exception, CancellationToken cancellationToken)
    {
        if (context.RequestAborted.IsCancellationRequested)
        {
            // The client went away: nobody reads an answer.
            context.Response.StatusCode = 499;
            return true;
        }

        var problem = Map(exception);
        if (problem is null)
        {
            return false;
        }

        if (problem.Status >= 500)
        {
            LogUnavailable(logger, exception);
            context.Response.Headers.RetryAfter = "1";
        }

        context.Response.StatusCode = problem.Status!.Value;
        return await problems.TryWriteAsync(new ProblemDetailsContext { HttpContext = context, ProblemDetails = problem, Exception = exception });
    }

    internal static ProblemDetails? Map(Exception exception) => exception switch
    {
        BadHttpRequestException { InnerException: JsonException json } => JsonProblem(json),
        BadHttpRequestException bad when BindFailure().Match(bad.Message) is { Success: true } m =>
            Invalid(SnakeCase(m.Groups["name"].Value), $"'{Truncate(m.Groups["value"].Value)}' is not a valid {Describe(m.Groups["type"].Value)}."),
        BadHttpRequestException bad when RequiredMissing().Match(bad.Message) is { Success: true } m =>
            Invalid(SnakeCase(m.Groups["name"].Value), "This parameter is required."),
        BadHttpRequestException bad => new ProblemDetails { Status = bad.StatusCode, Title = "The request could not be read.", Detail = bad.Message },
        DbUpdateException { InnerException: { } inner } => Map(inner),
        InvalidOperationException { InnerException: NpgsqlException inner } => Map(inner),
        System.Text.EncoderFallbackException => Invalid("body", "A text value is not valid Unicode (a lone surrogate)."),
        PostgresException pg => Database(pg),
        NpgsqlException or TimeoutException => Unavailable("The database is unreachable right now; try again shortly."),
        _ => null,
    };

    private static ProblemDetails Database(PostgresException pg) => pg.SqlState switch
    {
        PostgresErrorCodes.UniqueViolation => Conflict("Something with the same unique value already exists (for a project: the same name)."),
        PostgresErrorCodes.ForeignKeyViolation => Conflict("A todo or project this change refers to does not exist (any more)."),
        PostgresErrorCodes.CheckViolation => Conflict($"The change breaks a rule of the data: {pg.MessageText}"),
        PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.DeadlockDetected =>
            Conflict("The change collided with a concurrent change; retry it."),
        PostgresErrorCodes.StringDataRightTruncation => Invalid("body", "A value is longer than its field allows."),
        // Caught before the database by StorableTextFilter; a path that reaches the server with such text is still the client's.
        PostgresErrorCodes.CharacterNotInRepertoire or PostgresErrorCodes.UntranslatableCharacter =>
            Invalid("body", "A text value holds a character that cannot be stored (NUL, or not valid Unicode)."),
        PostgresErrorCodes.InvalidTextRepresentation or PostgresErrorCodes.NumericValueOutOfRange or PostgresErrorCodes.DatetimeFieldOverflow =>
            Invalid("body", "A value is out of the range its field allows."),
        _ when pg.SqlState.StartsWith("08", StringComparison.Ordinal) || pg.SqlState.StartsWith("53", StringComparison.Ordinal)
            || pg.SqlState.StartsWith("57", StringComparison.Ordinal) || pg.SqlState == PostgresErrorCodes.LockNotAvailable =>
            Unavailable("The database is busy or restarting; try again shortly."),
        _ => null!,
    };

    private static ProblemDetails JsonProblem(JsonException json)
    {
        var unmapped = UnmappedMember().Match(json.Message);
        if (unmapped.Success)
        {
            return Invalid(FieldOf(json.Path, unmapped.Groups["name"].Value), "This field is not part of the request.");
        }

        var field = FieldOf(json.Path, null);
        if (json.InnerException is InvalidOperationException { Message: var message } && message.Contains("UTF-16", StringComparison.Ordinal))
        {
            // A JSON escape of a lone surrogate (\ud800): text with no UTF-8 form, which nothing could store.
            return Invalid(field, "The text is not valid Unicode (a lone surrogate).");
        }

        return Invalid(field, field == "body" ? "The body is not valid JSON for this request." : "The value has the wrong type or format for this field.");
    }

    /// <summary>"$.subtasks[2].title" -> "subtasks[2].title"; an unknown member is reported under its own name.</summary>
    private static string FieldOf(string? path, string? member)
    {
        var field = string.IsNullOrEmpty(path) || path == "$" ? "" : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path.TrimStart('$');
        if (member is not null && !field.EndsWith(member, StringComparison.Ordinal))
        {
            field = field.Length == 0 ? member : $"{field}.{member}";
        }

        return field.Length == 0 ? "body" : field;
    }

    private static ValidationProblemDetails Invalid(string field, string message) =>
        new(new Dictionary<string, string[]> { [field] = [message] })
        {
            Status = StatusCodes.Status400BadRequest,
            Title = "One or more validation errors occurred.",
        };

    private static ProblemDetails Conflict(string detail) =>
        new() { Status = StatusCodes.Status409Conflict, Title = "Conflict", Detail = detail };

    private static ProblemDetails Unavailable(string detail) =>
        new() { Status = StatusCodes.Status503ServiceUnavailable, Title = "Service Unavailable", Detail = detail };

    private static string Describe(string type) => type switch
    {
        "Guid" or "Guid?" or "Nullable<Guid>" => "uuid",
        "int" or "int?" or "Int32" or "short" or "short?" or "Int16" or "Nullable<int>" or "Nullable<short>" => "whole number",
        "bool" or "bool?" or "Nullable<bool>" => "boolean (true or false)",
        "DateTimeOffset" or "DateTimeOffset?" or "Nullable<DateTimeOffset>" => "date and time (ISO 8601)",
        _ => "value",
    };

    /// <summary>Route and query parameters are snake_case on the wire (include_archived); C# names them in camelCase.</summary>
    private static string SnakeCase(string name) => UpperCase().Replace(name, m => "_" + m.Value.ToLowerInvariant());

    [GeneratedRegex("[A-Z]")]
    private static partial Regex UpperCase();

    private static string Truncate(string value) => value.Length <= 40 ? value : value[..40] + "...";

    [GeneratedRegex("""^Failed to bind parameter "(?<type>[^ "]+) (?<name>[^ "]+)" from "(?<value>.*)"\.$""", RegexOptions.Singleline)]
    private static partial Regex BindFailure();

    [GeneratedRegex("""^Required parameter "(?<type>[^ "]+) (?<name>[^ "]+)" was not provided""")]
    private static partial Regex RequiredMissing();

    [GeneratedRegex("""The JSON property '(?<name>[^']+)' could not be mapped""")]
    private static partial Regex UnmappedMember();

    [LoggerMessage(LogLevel.Warning, "A request failed because the database was unavailable")]
    private static partial void LogUnavailable(ILogger logger, Exception exception);
}
