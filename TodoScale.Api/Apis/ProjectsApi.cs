using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Contracts;
using TodoScale.Api.Errors;
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
        api.MapGet("/", ListProjects).WithName(nameof(ListProjects));
        api.MapPost("/", CreateProject).WithName(nameof(CreateProject));
        api.MapGet("/{id}", GetProject).WithName(nameof(GetProject));
        api.MapPatch("/{id}", RenameProject).WithName(nameof(RenameProject));
        api.MapDelete("/{id}", DeleteProject).WithName(nameof(DeleteProject));
        return app;
    }

    /// <summary>List your projects by name</summary>
    /// <remarks>
    /// Your projects in name order, one page at a time: pass the previous page's `nextCursor` as `cursor` for the
    /// next (`nextCursor` is null on the last page). Read-your-writes; `X-TodoScale-Read` says which copy served it.
    /// </remarks>
    /// <param name="limit">Projects per page, 1 to 200 (default 50).</param>
    /// <param name="cursor">The `nextCursor` of the previous page, as it came; leave it out for the first page.</param>
    /// <response code="200">A page of projects and the cursor of the next one (null on the last).</response>
    /// <response code="400">The limit or cursor is not valid; `errors` names each parameter.</response>
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

    /// <summary>Get one project</summary>
    /// <remarks>One of your projects; the `ETag` header is its version, for `If-Match` on a rename or delete.</remarks>
    /// <param name="id">The project's id.</param>
    /// <response code="200">The project; `ETag` is its version.</response>
    /// <response code="404">You have no project with this id (another user's is not found either).</response>
    public static async Task<Results<Ok<ProjectDto>, NotFoundProblem>> GetProject(Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        var project = context.Served(await context.Reads.ReadAsync(userId, new ReadSpec("get_project", "projects"), (db, ct) =>
            db.Projects.AsNoTracking().FirstOrDefaultAsync(p => p.UserId == userId && p.Id == id, ct), cancellationToken));
        if (project is null)
        {
            return ProjectNotFound(id);
        }

        ETags.Set(context.Http.Response, project.UpdatedAt);
        return TypedResults.Ok(ProjectDto.From(project));
    }

    /// <summary>Create a project</summary>
    /// <remarks>A project groups todos (`projectId` on a todo). Its `name` (1 to 200 characters, trimmed) is unique among your projects.</remarks>
    /// <param name="body">The project's name.</param>
    /// <response code="201">The new project; `Location` is its URL and `ETag` its version.</response>
    /// <response code="400">The name is missing or too long, or a field is not part of the request.</response>
    /// <response code="409">You already have a project with this name.</response>
    public static async Task<Results<Created<ProjectDto>, ValidationProblem, ConflictProblem>> CreateProject(
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

    /// <summary>Rename a project</summary>
    /// <remarks>Gives the project a new name, unique among your projects. `If-Match` makes the rename conditional on the version you read.</remarks>
    /// <param name="id">The project's id.</param>
    /// <param name="body">The new name.</param>
    /// <response code="200">The renamed project; `ETag` is its new version.</response>
    /// <response code="400">The name is missing or too long, or a field is not part of the request.</response>
    /// <response code="404">You have no project with this id.</response>
    /// <response code="409">You already have another project with this name.</response>
    /// <response code="412">`If-Match` names an older version: the project changed since you read it.</response>
    public static async Task<Results<Ok<ProjectDto>, ValidationProblem, NotFoundProblem, ConflictProblem, PreconditionFailedProblem>> RenameProject(
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
            return locked.PreconditionFailed is { } stale ? stale : ProjectNotFound(id);
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

    /// <summary>Delete a project (its todos stay)</summary>
    /// <remarks>
    /// Deletes the project and keeps its todos: their `projectId` becomes null, in the same transaction. Archived
    /// todos keep the id they had. `If-Match` makes the delete conditional on the version you read.
    /// </remarks>
    /// <param name="id">The project's id.</param>
    /// <response code="204">Deleted; its todos no longer have a project.</response>
    /// <response code="404">You have no project with this id.</response>
    /// <response code="412">`If-Match` names an older version: the project changed since you read it.</response>
    public static async Task<Results<NoContent, NotFoundProblem, PreconditionFailedProblem>> DeleteProject(
        Guid id, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "delete_project", cancellationToken);
        var locked = await write.LockProjectAsync(id, context.Http.Request, cancellationToken);
        if (locked.Row is null)
        {
            return locked.PreconditionFailed is { } stale ? stale : ProjectNotFound(id);
        }

        // What ON DELETE SET NULL (project_id) would do, said here so that it also reaches `todos` while the API
        // serves from it (a legacy migration before the switch: todos_active is then a view over `todos`).
        await write.Db.Database.ExecuteSqlAsync(
            $"UPDATE todos_active SET project_id = NULL WHERE user_id = {userId} AND project_id = {id}", cancellationToken);
        await write.Db.Database.ExecuteSqlAsync($"DELETE FROM projects WHERE user_id = {userId} AND id = {id}", cancellationToken);
        await write.CommitAsync(cancellationToken);
        return TypedResults.NoContent();
    }

    private static NotFoundProblem ProjectNotFound(Guid id) => new($"You have no project {id}.");

    private static ConflictProblem NameTaken(string name) => new($"You already have a project named '{name}'.");
}
