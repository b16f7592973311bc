using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.EntityFrameworkCore;
using TodoScale.Api.Contracts;
using TodoScale.Api.Extensions;
using TodoScale.Api.Queries;
using TodoScale.Api.Reads;
using TodoScale.Data.Entities;

namespace TodoScale.Api.Apis;

/// <summary>
/// AI interactions: record what a model was asked about a todo and what it answered, list them, and accept the
/// subtasks a model proposed as one batch (ai_generated = true) that is created whole or not at all.
/// </summary>
public static class AiApi
{
    public const string ListName = "ai";
    public const int MaxBatch = 100;

    public static IEndpointRouteBuilder MapAiApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/todos/{id}").WithTags("AI").RequireAuthorization(Policies.User);
        api.MapPost("/ai-interactions", RecordInteraction).WithName("RecordAiInteraction");
        api.MapGet("/ai-interactions", ListInteractions).WithName("ListAiInteractions");
        api.MapPost("/subtasks/ai", AcceptSubtasks).WithName("AcceptAiSubtasks");
        return app;
    }

    public static async Task<Results<Created<AiInteractionDto>, ValidationProblem, NotFound>> RecordInteraction(
        Guid id, RecordAiInteractionRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        validation.Length("kind", body.Kind, 50, required: true);
        if (body.Kind is { } kind && !IsKind(kind))
        {
            validation.Add("kind", "The kind is lower snake case, starting with a letter (generate_subtasks, summarize).");
        }

        validation.Length("model", body.Model, 100, required: true);
        validation.Length("prompt", body.Prompt, Validation.PromptMaxLength, required: true);
        if (body.Response is { Length: > Validation.PromptMaxLength })
        {
            validation.Add("response", $"At most {Validation.PromptMaxLength} characters are allowed.");
        }

        validation.NotNegative("tokensIn", body.TokensIn);
        validation.NotNegative("tokensOut", body.TokensOut);
        validation.NotNegative("latencyMs", body.LatencyMs);
        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "record_ai_interaction", cancellationToken);
        if (!await write.Db.Todos.AnyAsync(t => t.UserId == userId && t.Id == id, cancellationToken))
        {
            return TypedResults.NotFound();
        }

        var interaction = new AiInteraction
        {
            UserId = userId,
            Id = Guid.CreateVersion7(),
            TodoId = id,
            Kind = body.Kind!,
            Model = body.Model!,
            Prompt = body.Prompt!,
            Response = body.Response,
            TokensIn = body.TokensIn ?? 0,
            TokensOut = body.TokensOut ?? 0,
            LatencyMs = body.LatencyMs ?? 0,
        };
        write.Db.AiInteractions.Add(interaction);
        await write.CommitAsync(cancellationToken);
        return TypedResults.Created($"/api/todos/{id}/ai-interactions/{interaction.Id}", AiInteractionDto.From(interaction));
    }

    public static async Task<Results<Ok<Page<AiInteractionDto>>, ValidationProblem, NotFound>> ListInteractions(
        Guid id, [AsParameters] UserHandlerContext context, int? limit, string? cursor, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        var pageSize = validation.PageSize(limit);

        if (!Cursor.TryDecode(cursor, ListName, "created", false, out var after, out var cursorError))
        {
            validation.Add("cursor", cursorError!);
        }

        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        var page = context.Served(await context.Reads.ReadAsync(userId, new ReadSpec("list_ai_interactions", "ai_interactions"), async (db, ct) =>
        {
            if (!await db.Todos.AnyAsync(t => t.UserId == userId && t.Id == id, ct)
                && !await db.ArchivedTodos.AnyAsync(t => t.UserId == userId && t.Id == id, ct))
            {
                return null;
            }

            var query = db.AiInteractions.AsNoTracking().Where(i => i.UserId == userId && i.TodoId == id);
            if (after is not null)
            {
                var (createdAt, afterId) = (after.CreatedAt.ToUniversalTime(), after.Id);
                query = query.Where(i => EF.Functions.LessThan(ValueTuple.Create(i.CreatedAt, i.Id), ValueTuple.Create(createdAt, afterId)));
            }

            var rows = await query.OrderByDescending(i => i.CreatedAt).ThenByDescending(i => i.Id).Take(pageSize + 1).ToListAsync(ct);
            var next = rows.Count > pageSize ? new Cursor(ListName, "created", false, rows[pageSize - 1].CreatedAt, rows[pageSize - 1].Id).Encode() : null;
            return new Page<AiInteractionDto>(rows.Take(pageSize).Select(i => AiInteractionDto.From(i)).ToList(), next);
        }, cancellationToken));

        return page is null ? TypedResults.NotFound() : TypedResults.Ok(page);
    }

    public static async Task<Results<Created<IReadOnlyList<TodoDto>>, ValidationProblem, NotFound, ProblemHttpResult>> AcceptSubtasks(
        Guid id, AcceptAiSubtasksRequest body, [AsParameters] UserHandlerContext context, CancellationToken cancellationToken)
    {
        var validation = new Validation();
        if (body.Subtasks is null || body.Subtasks.Count == 0)
        {
            validation.Add("subtasks", "At least one subtask is required.");
        }
        else if (body.Subtasks.Count > MaxBatch)
        {
            validation.Add("subtasks", $"At most {MaxBatch} subtasks are accepted at once; this batch has {body.Subtasks.Count}.");
        }
        else
        {
            for (var i = 0; i < body.Subtasks.Count; i++)
            {
                if (body.Subtasks[i] is not { } item)
                {
                    validation.Add($"subtasks[{i}]", "A subtask is required here, not null.");
                    continue;
                }

                validation.Title($"subtasks[{i}].title", item.Title);
                validation.Description($"subtasks[{i}].description", item.Description);
                validation.Priority($"subtasks[{i}].priority", item.Priority);
            }
        }

        if (!validation.IsValid)
        {
            return TypedResults.ValidationProblem(validation.Errors);
        }

        var userId = context.UserId;
        await using var write = await context.Writes.BeginAsync(userId, "accept_ai_subtasks", cancellationToken);
        if (await SubtasksApi.CheckParentAsync(write.Db, userId, id, "id", subtreeHeight: 0, context, cancellationToken) is { } parentProblem)
        {
            return parentProblem;
        }

        if (body.InteractionId is { } interactionId
            && !await write.Db.AiInteractions.AnyAsync(i => i.UserId == userId && i.Id == interactionId && i.TodoId == id, cancellationToken))
        {
            return TypedResults.Problem(
                statusCode: StatusCodes.Status404NotFound, title: "Not Found",
                detail: $"The AI interaction {interactionId} (interactionId) was not found for this todo.");
        }

        var created = body.Subtasks!.Select(item => new Todo
        {
            Id = Guid.CreateVersion7(),
            UserId = userId,
            ParentTodoId = id,
            Title = item.Title!,
            Description = item.Description,
            Priority = item.Priority ?? 3,
            DueDate = item.DueDate?.ToUniversalTime(),
            AiGenerated = true,
        }).ToList();
        write.Db.Todos.AddRange(created);
        await write.CommitAsync(cancellationToken);
        return TypedResults.Created($"/api/todos/{id}/subtree", (IReadOnlyList<TodoDto>)created.Select(t => TodoDto.From(t)).ToList());
    }

    private static bool IsKind(string kind) =>
        kind.Length > 0 && kind[0] is >= 'a' and <= 'z' && kind.All(c => c is >= 'a' and <= 'z' or >= '0' and <= '9' or '_');
}
