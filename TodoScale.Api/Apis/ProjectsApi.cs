using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Contracts;
using TodoScale.Api.Extensions;
using TodoScale.Api.Queries;
using TodoScale.Api.Reads;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Apis;

/// <summary>
/// Projects: create, list (by name, keyset pages), get, rename, delete. Deleting a project keeps its todos: the
/// database clears their project_id (ON DELETE SET NULL (project_id)); archived todos keep the id they had.
/// </summary>
public static class ProjectsApi
{
    public const string ListName = "projects";

    public static IEndpointRouteBuilder MapProjectsApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/projects").WithTags("Projects").RequireAuthorization(Policies.User);
        api.MapGet("/", ListProjects).WithName("ListProjects");
        api.MapPost("/", CreateProject).WithName("CreateProject");
        api.MapGet("/{id}", GetProject).WithName("GetProject");
        api.MapPatch("/{id}", RenameProject).WithName("RenameProject");
        api.MapDelete("/{id}", DeleteProject).WithName("DeleteProject");
        return app;
    }

    public static async Task<Results<Ok<Page<ProjectDto>>, ValidationProblem>> ListProjects(
        [AsParameters] UserHandlerContext context, int? limit, string? cursor, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var pageSize = validation.PageSize(limit);

        if (!Cursor.TryDecode(cursor, ListName, "name", false, out var after, out var cursorError) || after is { Name: null })
        {
            validation.Add("cursor", cursorError ?? "The cursor is not one this API issued.");
        }

        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        var pageKey = after is null ? $"projects?l={pageSize}" : null;
        var page = await context.Reads.ReadAsync(userId, new ReadSpec("list_projects", "projects", pageKey), async (db, ct) =>
        {
            // Names are unique per user: the name alone is the keyset, served by UNIQUE (user_id, name).
            var afterName = after?.Name;
            var query = afterName is null
                ? db.Projects.Where(p => p.UserId == userId)
                : db.Projects.FromSql($"SELECT * FROM projects WHERE user_id = {userId} AND name > {afterName}");

            var rows = await query.AsNoTracking().OrderBy(p => p.Name).Take(pageSize + 1).ToListAsync(ct);
            var next = rows.Count > pageSize
                ? new Cursor(ListName, "name", false, rows[pageSize - 1].CreatedAt, rows[pageSize - 1].Id, Name: rows[pageSize - 1].Name).Encode()
                : null;
            return new Page<ProjectDto>(rows.Take(pageSize).Select(ProjectDto.From).ToList(), next);
        }, cancellationToken);
        return TypedResults.Ok(context.Served(page));
    }

    public static async Task<Results<Ok<ProjectDto>, NotFound>> GetProject(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        var project = context.Served(await context.Reads.ReadAsync(userId, new ReadSpec("get_project", "projects"), (db, ct) =>
            db.Projects.AsNoTracking().FirstOrDefaultAsync(p => p.UserId == userId && p.Id == id, ct), cancellationToken));
        if (project is null)
        {
            return TypedResults.NotFound();
        }

        ETags.Set(context.Http.Response, project.UpdatedAt);
        return TypedResults.Ok(ProjectDto.From(project));
    }

    public static async Task<Results<Created<ProjectDto>, ValidationProblem, ProblemHttpResult>> CreateProject(
        ProjectRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        validation.Length("name", body.Name, Validation.ProjectNameMaxLength, required: true);
        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        var name = body.Name!.Trim();
        await using var write = await context.Writes.BeginAsync(userId, "create_project", cancellationToken);
        if (await write.Db.Projects.AnyAsync(p => p.UserId == userId && p.Name == name, cancellationToken))
        {
            return NameTaken(name);
        }

        var project = new Project { UserId = userId, Id = Guid.CreateVersion7(), Name = name };
        write.Db.Projects.Add(project);
        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, project.UpdatedAt);
        return TypedResults.Created($"/api/projects/{project.Id}", ProjectDto.From(project));
    }

    public static async Task<Results<Ok<ProjectDto>, ValidationProblem, NotFound, ProblemHttpResult>> RenameProject(
        Guid id, ProjectRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        validation.Length("name", body.Name, Validation.ProjectNameMaxLength, required: true);
        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        var name = body.Name!.Trim();
        await using var write = await context.Writes.BeginAsync(userId, "rename_project", cancellationToken);
        var locked = await write.LockProjectAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is not { } project)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        if (project.Name != name)
        {
            if (await write.Db.Projects.AnyAsync(p => p.UserId == userId && p.Name == name && p.Id != id, cancellationToken))
            {
                return NameTaken(name);
            }

            project.Name = name;
        }

        await write.CommitAsync(cancellationToken);
        ETags.Set(context.Http.Response, project.UpdatedAt);
        return TypedResults.Ok(ProjectDto.From(project));
    }

    public static async Task<Results<NoContent, NotFound, ProblemHttpResult>> DeleteProject(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "delete_project", cancellationToken);
        var locked = await write.LockProjectAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is null)
        {
            return locked.PreconditionFailed is { } stale ? stale : TypedResults.NotFound();
        }

        // What ON DELETE SET NULL (project_id) would do, said here so that it also reaches `todos` while the API
        // serves from it (a legacy migration before the switch: todos_active is then a view over `todos`).
        await write.Db.Database.ExecuteSqlAsync(
            $"UPDATE todos_active SET project_id = NULL WHERE user_id = {userId} AND project_id = {id}", cancellationToken);
        await write.Db.Database.ExecuteSqlAsync($"DELETE FROM projects WHERE user_id = {userId} AND id = {id}", cancellationToken);
        await write.CommitAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    private static ProblemHttpResult NameTaken(string name) =>
        TypedResults.Problem(statusCode: StatusCodes.Status409Conflict, title: "Conflict", detail: $"You already have a project named '{name}'.");
}
