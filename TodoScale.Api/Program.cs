using Scalar.AspNetCore;
using TodoScale.Api.Apis;
using TodoScale.Api.Extensions;

var builder = WebApplication.CreateBuilder(args);

builder.AddServiceDefaults();
builder.AddApplicationServices();
builder.AddTodoScaleAuthentication();
builder.Services.AddProblemDetails();

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
app.MapProjectsApi();
app.MapAiApi();

app.Run();
