using Scalar.AspNetCore;
using TodoScale.Api.Apis;
using TodoScale.Api.Contracts;
using TodoScale.Api.Extensions;
using TodoScale.Api.OpenApi;
using TodoScale.Api.RateLimiting;
using TodoScale.Api.Reads;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddApplicationServices();
builder.AddTodoScaleAuthentication();
builder.AddTodoScaleRateLimiting();
builder.Services.AddProblemDetails(options => options.CustomizeProblemDetails = context =>
{
    // A developer sees why a request failed; production answers never carry internals.
    if (context.Exception is { } exception && builder.Environment.IsDevelopment())
    {
        context.ProblemDetails.Extensions["exception"] = exception.ToString();
    }
});

var app = builder.Build();

app.UseExceptionHandler();
app.UseStatusCodePages();
app.UseAuthentication();
app.UseRateLimiter(); // after authentication: the budget is the token's user's
app.UseAuthorization();
app.UseClientSessions(); // TodoScale-Session: the client's own writes, whichever instance serves it

app.MapDefaultEndpoints();
app.MapOpenApi();
if (app.Environment.IsDevelopment())
{
    // Every tag open, so the sidebar lists every operation by its summary; the token box preselects the bearer scheme.
    app.MapScalarApiReference(options => options
        .WithTitle("TodoScale API")
        .ExpandAllTags()
        .AddPreferredSecuritySchemes(DocumentInfoTransformer.SchemeName));
}

// Every endpoint refuses text PostgreSQL cannot store (NUL, lone surrogates) with a 400 naming the field.
var api = app.MapGroup("").AddEndpointFilter<StorableTextFilter>();
api.MapIdentityApi();
api.MapTodosApi();
api.MapSubtasksApi();
api.MapProjectsApi();
api.MapAiApi();
api.MapOperatorApi();

app.Run();
