using System.Text;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Api.Contracts;
using TodoScale.Data.Entities;
using TodoScale.Data.Tenancy;

namespace TodoScale.Api.Queries;

public enum TodoSort
{
    /// <summary>Newest first: (created_at, id) descending.</summary>
    Created,

    /// <summary>Soonest due first, no due date last; then oldest first.</summary>
    Due,

    /// <summary>Most urgent (1) first; then oldest first.</summary>
    Priority,
}

/// <summary>
/// A user's todo list as SQL: filters, one of three sorts, keyset pagination, and (include_archived) the archived
/// todos merged in. Each branch is ORDER BY .. LIMIT on its own, so PostgreSQL walks the matching index of the
/// user's one partition and stops after a page; the merge then takes the first page of the two. The SQL is built
/// from fixed fragments only; every value is a parameter.
/// </summary>
public sealed record TodoListQuery(
    IReadOnlyList<TodoStatus>? Statuses,
    Guid? ProjectId,
    short? Priority,
    DateTimeOffset? DueBefore,
    DateTimeOffset? DueAfter,
    TodoSort Sort,
    bool IncludeArchived,
    int Limit,
    Cursor? After)
{
    public const string ListName = "todos";

    private const string Columns =
        "id, parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, depth, created_at, updated_at";

    /// <summary>Parses and checks the query string; every problem is named by its parameter.</summary>
    public static TodoListQuery? Parse(
        string? status, Guid? project, short? priority, DateTimeOffset? dueBefore, DateTimeOffset? dueAfter,
        string? sort, bool? includeArchived, int? limit, string? cursor, Validation validation)
    {
        List<TodoStatus>? statuses = null;
        if (status is not null)
        {
            statuses = [];
            foreach (var part in status.Split(',', StringSplitOptions.TrimEntries))
            {
                if (Validation.TryParseStatus(part, out var parsed))
                {
                    statuses.Add(parsed);
                }
                else
                {
                    validation.Add("status", $"'{Validation.Truncate(part)}' is not a status; use todo, in_progress, done or cancelled (comma-separated for several).");
                }
            }
        }

        validation.Priority("priority", priority);
        var parsedSort = sort switch
        {
            null or "created" => TodoSort.Created,
            "due" => TodoSort.Due,
            "priority" => TodoSort.Priority,
            _ => (TodoSort?)null,
        };
        if (parsedSort is null)
        {
            validation.Add("sort", $"'{Validation.Truncate(sort!)}' is not a sort; use created, due or priority.");
        }

        var pageSize = validation.PageSize(limit);

        var archived = includeArchived ?? false;
        var sortName = (parsedSort ?? TodoSort.Created).ToString().ToLowerInvariant();
        if (!Cursor.TryDecode(cursor, ListName, sortName, archived, out var after, out var cursorError))
        {
            validation.Add("cursor", cursorError!);
        }

        return validation.IsValid
            ? new TodoListQuery(statuses?.Distinct().ToArray(), project, priority, dueBefore, dueAfter, parsedSort!.Value, archived, pageSize, after)
            : null;
    }

    /// <summary>The cache key of a first page (every parameter that shapes it), or null for later pages.</summary>
    public string? FirstPageKey() => After is not null
        ? null
        : $"todos?s={Sort}&st={(Statuses is null ? "" : string.Join(',', Statuses))}&p={ProjectId}&pr={Priority}" +
          $"&db={DueBefore?.UtcTicks}&da={DueAfter?.UtcTicks}&a={IncludeArchived}&l={Limit}";

    /// <summary>
    /// Runs the page in the tenant's <paramref name="batch"/>: SET LOCAL plan_cache_mode (not with include_archived,
    /// see below) and the SELECT go between its BEGIN + SET LOCAL app.user_id and its COMMIT, one round trip in all.
    /// The SELECT is prepared per connection (the data source's auto-prepare) and runs its generic plan. Measured
    /// (bench/results/2026-11-25-medium.md, 10M rows): under the default plan_cache_mode PostgreSQL re-plans the
    /// prepared statement on every call (p50 0.362 ms), where the generic plan, pruned to the user's partition at run
    /// time and walking the (user_id, created_at, id) index backwards to the page size, takes 0.143 ms (the
    /// unpartitioned table: 0.141 ms), for typical and heavy users alike. Addressing the user's partition by name
    /// (0.133 ms) would read the wrong partition for a moment during a re-split; this stays right through one.
    /// QueryPlanTests pins the generic plans.
    /// </summary>
    public async Task<Page<TodoDto>> ExecuteAsync(TenantBatch batch, CancellationToken cancellationToken)
    {
        if (!IncludeArchived)
        {
            // Not for the merge with the archive: its UNION ALL of two tables has no generic plan on Citus ("could
            // not create distributed plan"), where Citus otherwise prices such a plan out so PostgreSQL keeps
            // planning it per call; the single-table page is pruned to the user's shard at run time on Citus too.
            batch.Add("SET LOCAL plan_cache_mode = force_generic_plan");
        }

        var select = new NpgsqlBatchCommand();
        select.CommandText = BuildSql(select.Parameters, batch.UserId);
        batch.Add(select);
        var items = new List<TodoDto>(Limit + 1);
        await using (var reader = await batch.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                items.Add(ReadTodo(reader));
            }
        }

        if (items.Count <= Limit)
        {
            return new Page<TodoDto>(items, null);
        }

        items.RemoveAt(items.Count - 1);
        var last = items[^1];
        var next = new Cursor(ListName, Sort.ToString().ToLowerInvariant(), IncludeArchived, last.CreatedAt, last.Id,
            Sort == TodoSort.Due ? last.DueDate : null, Sort == TodoSort.Priority ? last.Priority : null);
        return new Page<TodoDto>(items, next.Encode());
    }

    /// <summary>The statement text; public so the benchmark runs exactly what the API runs.</summary>
    public string BuildSql(NpgsqlParameterCollection parameters, Guid userId)
    {
        parameters.Add(new NpgsqlParameter<Guid>("user_id", NpgsqlDbType.Uuid) { TypedValue = userId });
        parameters.Add(new NpgsqlParameter<int>("take", NpgsqlDbType.Integer) { TypedValue = Limit + 1 });
        var filters = new StringBuilder();
        if (Statuses is [var single])
        {
            filters.Append(" AND status = @status");
            parameters.Add(new NpgsqlParameter<string>("status", NpgsqlDbType.Text) { TypedValue = single.ToDatabase() });
        }
        else if (Statuses is { Count: > 1 })
        {
            filters.Append(" AND status = ANY(@statuses)");
            parameters.Add(new NpgsqlParameter<string[]>("statuses", NpgsqlDbType.Array | NpgsqlDbType.Text)
            {
                TypedValue = Statuses.Select(s => s.ToDatabase()).ToArray(),
            });
        }

        if (ProjectId is { } project)
        {
            filters.Append(" AND project_id = @project_id");
            parameters.Add(new NpgsqlParameter<Guid>("project_id", NpgsqlDbType.Uuid) { TypedValue = project });
        }

        if (Priority is { } priority)
        {
            filters.Append(" AND priority = @priority");
            parameters.Add(new NpgsqlParameter<short>("priority", NpgsqlDbType.Smallint) { TypedValue = priority });
        }

        if (DueBefore is { } before)
        {
            filters.Append(" AND due_date < @due_before");
            parameters.Add(new NpgsqlParameter<DateTimeOffset>("due_before", NpgsqlDbType.TimestampTz) { TypedValue = before.ToUniversalTime() });
        }

        if (DueAfter is { } dueAfter)
        {
            filters.Append(" AND due_date >= @due_after");
            parameters.Add(new NpgsqlParameter<DateTimeOffset>("due_after", NpgsqlDbType.TimestampTz) { TypedValue = dueAfter.ToUniversalTime() });
        }

        string order;
        switch (Sort)
        {
            case TodoSort.Created:
                order = "created_at DESC, id DESC";
                if (After is not null)
                {
                    filters.Append(" AND (created_at, id) < (@after_created, @after_id)");
                }

                break;
            case TodoSort.Due:
                order = "due_date, created_at, id";
                if (After is { DueDate: { } due })
                {
                    filters.Append(" AND ((due_date, created_at, id) > (@after_due, @after_created, @after_id) OR due_date IS NULL)");
                    parameters.Add(new NpgsqlParameter<DateTimeOffset>("after_due", NpgsqlDbType.TimestampTz) { TypedValue = due.ToUniversalTime() });
                }
                else if (After is not null)
                {
                    filters.Append(" AND due_date IS NULL AND (created_at, id) > (@after_created, @after_id)");
                }

                break;
            default:
                order = "priority, created_at, id";
                if (After is not null)
                {
                    filters.Append(" AND (priority, created_at, id) > (@after_priority, @after_created, @after_id)");
                    parameters.Add(new NpgsqlParameter<short>("after_priority", NpgsqlDbType.Smallint) { TypedValue = After.Priority ?? 0 });
                }

                break;
        }

        if (After is not null)
        {
            parameters.Add(new NpgsqlParameter<DateTimeOffset>("after_created", NpgsqlDbType.TimestampTz) { TypedValue = After.CreatedAt.ToUniversalTime() });
            parameters.Add(new NpgsqlParameter<Guid>("after_id", NpgsqlDbType.Uuid) { TypedValue = After.Id });
        }

        var active = $"SELECT {Columns}, NULL::timestamptz AS archived_at FROM todos_active WHERE user_id = @user_id{filters} ORDER BY {order} LIMIT @take";
        if (!IncludeArchived)
        {
            return active;
        }

        var archived = $"SELECT {Columns}, archived_at FROM todos_archived WHERE user_id = @user_id{filters} ORDER BY {order} LIMIT @take";
        return $"SELECT {Columns}, archived_at FROM (({active}) UNION ALL ({archived})) AS page ORDER BY {order} LIMIT @take";
    }

    internal static TodoDto ReadTodo(NpgsqlDataReader reader) => new(
        Id: reader.GetGuid(0),
        ParentId: reader.IsDBNull(1) ? null : reader.GetGuid(1),
        ProjectId: reader.IsDBNull(2) ? null : reader.GetGuid(2),
        Title: reader.GetString(3),
        Description: reader.IsDBNull(4) ? null : reader.GetString(4),
        Status: reader.GetString(5),
        Priority: reader.GetInt16(6),
        DueDate: reader.IsDBNull(7) ? null : reader.GetFieldValue<DateTimeOffset>(7),
        CompletedAt: reader.IsDBNull(8) ? null : reader.GetFieldValue<DateTimeOffset>(8),
        AiGenerated: reader.GetBoolean(9),
        Depth: reader.GetInt16(10),
        CreatedAt: reader.GetFieldValue<DateTimeOffset>(11),
        UpdatedAt: reader.GetFieldValue<DateTimeOffset>(12),
        ArchivedAt: reader.IsDBNull(13) ? null : reader.GetFieldValue<DateTimeOffset>(13));
}
