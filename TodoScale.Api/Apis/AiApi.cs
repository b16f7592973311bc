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
        api.MapPost("/ai-interactions", RecordAiInteraction).WithName(nameof(RecordAiInteraction));
        api.MapGet("/ai-interactions", ListAiInteractions).WithName(nameof(ListAiInteractions));
        api.MapPost("/subtasks/ai", AcceptAiSubtasks).WithName(nameof(AcceptAiSubtasks));
        return app;
    }

    /// <summary>Record an AI interaction about a todo</summary>
    /// <remarks>
    /// Keeps what a model was asked about the todo and what it answered: `kind` (lower snake case, such as
    /// `generate_subtasks` or `summarize`), `model`, `prompt` and `response` (each up to 200,000 characters), token
    /// counts and latency. Recording does not create subtasks: accept the ones you keep with the AI batch.
    /// </remarks>
    /// <param name="id">The todo's id (an active todo of yours).</param>
    /// <param name="body">The interaction: `kind`, `model` and `prompt` required.</param>
    /// <response code="201">The recorded interaction; `Location` is its URL.</response>
    /// <response code="400">A field is missing, too long or negative, or `kind` is not lower snake case; `errors` names each.</response>
    /// <response code="404">You have no active todo with this id.</response>
    public static async Task<Results<Created<AiInteractionDto>, ValidationProblem, NotFoundProblem>> RecordAiInteraction(
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
            return TodosApi.TodoNotFound(id);
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

    /// <summary>List a todo's AI interactions, newest first</summary>
    /// <remarks>
    /// The interactions recorded for one of your todos (active or archived), newest first, one page at a time: pass
    /// the previous page's `nextCursor` as `cursor` for the next.
    /// </remarks>
    /// <param name="id">The todo's id.</param>
    /// <param name="limit">Interactions per page, 1 to 200 (default 50).</param>
    /// <param name="cursor">The `nextCursor` of the previous page, as it came; leave it out for the first page.</param>
    /// <response code="200">A page of interactions and the cursor of the next one (null on the last).</response>
    /// <response code="400">The limit or cursor is not valid; `errors` names each parameter.</response>
    /// <response code="404">You have no todo with this id.</response>
    public static async Task<Results<Ok<Page<AiInteractionDto>>, ValidationProblem, NotFoundProblem>> ListAiInteractions(
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

        return page is null ? TodosApi.TodoNotFound(id) : TypedResults.Ok(page);
    }

    /// <summary>Accept the subtasks a model proposed, all or none</summary>
    /// <remarks>
    /// Creates 1 to 100 subtasks under the todo in one transaction, each with `aiGenerated: true`: every one is
    /// created or, if any is refused, none. Each item is checked like a todo's create (`title` required); a
    /// problem names the item and field (`subtasks[2].title`). `interactionId`, when sent, must be an interaction
    /// recorded for this todo. The parent must be active and below the depth limit.
    /// </remarks>
    /// <param name="id">The parent todo's id.</param>
    /// <param name="body">The subtasks, in the order to create them, and the interaction that proposed them.</param>
    /// <response code="201">The created subtasks, in the order sent; `Location` is the parent's subtree.</response>
    /// <response code="400">No subtasks, more than 100, or an item with a bad field; `errors` names `subtasks[i].field`.</response>
    /// <response code="404">You have no active todo with this id, or the `interactionId` is not one of this todo's.</response>
    /// <response code="409">The parent is already at the depth limit.</response>
    public static async Task<Results<Created<IReadOnlyList<TodoDto>>, ValidationProblem, NotFoundProblem, ConflictProblem>> AcceptAiSubtasks(
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
        if (await SubtasksApi.ParentDepthAsync(write.Db, userId, id, cancellationToken) is not { } parentDepth)
        {
            return SubtasksApi.ParentNotFound(id, "id");
        }

        if (SubtasksApi.TooDeep(context, parentDepth, subtreeHeight: 0) is { } tooDeep)
        {
            return tooDeep;
        }

        if (body.InteractionId is { } interactionId
            && !await write.Db.AiInteractions.AnyAsync(i => i.UserId == userId && i.Id == interactionId && i.TodoId == id, cancellationToken))
        {
            return new NotFoundProblem($"The AI interaction {interactionId} (interactionId) was not found for this todo.");
        }

        // One transaction gives the batch one created_at, so ids order it where it is listed (the subtree): ascending
        // ids keep the model's order (two UUIDv7s of the same millisecond are otherwise in random order).
        var ids = body.Subtasks!.Select(_ => Guid.CreateVersion7()).Order().ToList();
        var created = body.Subtasks!.Select((item, i) => new Todo
        {
            Id = ids[i],
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
