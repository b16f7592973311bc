using Scalar.AspNetCore;
using TodoScale.Api.Apis;
using TodoScale.Api.Extensions;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddApplicationServices();
builder.AddTodoScaleAuthentication();
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
app.UseAuthorization();

app.MapDefaultEndpoints();
app.MapOpenApi();
if (app.Environment.IsDevelopment())
{
    app.MapScalarApiReference();
}

app.MapIdentityApi();
app.MapTodosApi();
app.MapSubtasksApi();
app.MapProjectsApi();
app.MapAiApi();
app.MapOperatorApi();

app.Run();
