using System.Text.Json;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.EntityFrameworkCore;
using Npgsql;
using TodoScale.Api.Errors;

namespace TodoScale.Tests.Api;

/// <summary>
/// What escapes a handler becomes ProblemDetails by SQLSTATE (never by constraint name), and a database that cannot
/// be reached is a 503, never a 404 or a 500. The HTTP tests cover the common paths end to end; this covers every
/// mapping, including failures that are hard to provoke on a healthy stack.
/// </summary>
public sealed class ErrorMappingTests
{
    [Theory]
    [InlineData("23505", 409)]
    [InlineData("23503", 409)]
    [InlineData("23514", 409)]
    [InlineData("40001", 409)]
    [InlineData("40P01", 409)]
    [InlineData("22001", 400)]
    [InlineData("22P02", 400)]
    [InlineData("08006", 503)]
    [InlineData("53300", 503)]
    [InlineData("57P01", 503)]
    [InlineData("57014", 503)]
    [InlineData("55P03", 503)]
    public void A_database_error_maps_by_sqlstate(string sqlState, int status)
    {
        var error = new PostgresException("boom", "ERROR", "ERROR", sqlState);
        Assert.Equal(status, ApiExceptionHandler.Map(error)!.Status);
        // EF wraps what SaveChanges hits: the mapping looks through it.
        Assert.Equal(status, ApiExceptionHandler.Map(new DbUpdateException("save failed", error))!.Status);
    }

    [Fact]
    public void An_unknown_server_error_is_not_disguised_as_a_client_error()
    {
        Assert.Null(ApiExceptionHandler.Map(new PostgresException("permission denied", "ERROR", "ERROR", "42501")));
        Assert.Null(ApiExceptionHandler.Map(new InvalidOperationException("a bug")));
    }

    [Fact]
    public void An_unreachable_database_is_a_503()
    {
        Assert.Equal(503, ApiExceptionHandler.Map(new NpgsqlException("Failed to connect to 127.0.0.1:5432"))!.Status);
        Assert.Equal(503, ApiExceptionHandler.Map(new TimeoutException("pool exhausted"))!.Status);
    }

    [Theory]
    [InlineData("""Failed to bind parameter "Guid id" from "abc".""", "id")]
    [InlineData("""Failed to bind parameter "Nullable<bool> includeArchived" from "maybe".""", "include_archived")]
    [InlineData("""Failed to bind parameter "Nullable<DateTimeOffset> dueBefore" from "soon".""", "due_before")]
    [InlineData("""Required parameter "CreateTodoRequest body" was not provided from body.""", "body")]
    public void A_parameter_that_does_not_bind_is_a_400_naming_it(string message, string field)
    {
        var problem = Assert.IsType<ValidationProblemDetails>(ApiExceptionHandler.Map(new BadHttpRequestException(message)));
        Assert.Equal(400, problem.Status);
        Assert.Equal([field], problem.Errors.Keys);
    }

    [Fact]
    public void A_json_error_names_the_field_by_its_path()
    {
        var wrongType = new JsonException("The JSON value could not be converted", "$.subtasks[2].priority", 1, 40);
        var problem = Assert.IsType<ValidationProblemDetails>(ApiExceptionHandler.Map(new BadHttpRequestException("bad json", wrongType)));
        Assert.Equal(["subtasks[2].priority"], problem.Errors.Keys);
    }
}
