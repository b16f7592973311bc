using TodoScale.Data.Entities;

namespace TodoScale.Api.Contracts;

/// <summary>
/// Collects what is wrong with a request, field by field, for a ProblemDetails 400 (ValidationProblem) whose
/// <c>errors</c> name each bad field the way the client sent it (camelCase, <c>subtasks[2].title</c>).
/// </summary>
public sealed class Validation
{
    public const int TitleMaxLength = 500;
    public const int DescriptionMaxLength = 20_000;
    public const int ProjectNameMaxLength = 200;
    public const int PromptMaxLength = 200_000;
    public const int DefaultPageSize = 50;
    public const int MaxPageSize = 200;

    private readonly Dictionary<string, List<string>> _errors = new(StringComparer.Ordinal);

    public bool IsValid => _errors.Count == 0;

    public Dictionary<string, string[]> Errors => _errors.ToDictionary(e => e.Key, e => e.Value.ToArray(), StringComparer.Ordinal);

    public void Add(string field, string message)
    {
        if (!_errors.TryGetValue(field, out var messages))
        {
            _errors[field] = messages = [];
        }

        messages.Add(message);
    }

    public void Title(string field, string? title, bool required = true)
    {
        if (title is null)
        {
            if (required)
            {
                Add(field, "A title is required.");
            }
        }
        else if (string.IsNullOrWhiteSpace(title))
        {
            Add(field, "The title must not be blank.");
        }
        else if (title.Length > TitleMaxLength)
        {
            Add(field, $"The title has {title.Length} characters; at most {TitleMaxLength} are allowed.");
        }
    }

    public void Description(string field, string? description)
    {
        if (description is { Length: > DescriptionMaxLength })
        {
            Add(field, $"The description has {description.Length} characters; at most {DescriptionMaxLength} are allowed.");
        }
    }

    public TodoStatus? Status(string field, string? status)
    {
        if (status is null)
        {
            return null;
        }

        if (TryParseStatus(status, out var parsed))
        {
            return parsed;
        }

        Add(field, $"'{Truncate(status)}' is not a status; use todo, in_progress, done or cancelled.");
        return null;
    }

    public void Priority(string field, short? priority)
    {
        if (priority is < 1 or > 5)
        {
            Add(field, "The priority is 1 (most urgent) to 5.");
        }
    }

    public void Length(string field, string? value, int max, bool required)
    {
        if (value is null || string.IsNullOrWhiteSpace(value))
        {
            if (required || value is not null)
            {
                Add(field, "A non-blank value is required.");
            }
        }
        else if (value.Length > max)
        {
            Add(field, $"The value has {value.Length} characters; at most {max} are allowed.");
        }
    }

    /// <summary>The page size of a list (<c>limit</c>): 1 to <see cref="MaxPageSize"/>, <see cref="DefaultPageSize"/> when absent.</summary>
    public int PageSize(int? limit)
    {
        var pageSize = limit ?? DefaultPageSize;
        if (pageSize is < 1 or > MaxPageSize)
        {
            Add("limit", $"The page size is 1 to {MaxPageSize} (default {DefaultPageSize}).");
        }

        return pageSize;
    }

    public void NotNegative(string field, int? value)
    {
        if (value < 0)
        {
            Add(field, "The value must not be negative.");
        }
    }

    public static bool TryParseStatus(string value, out TodoStatus status)
    {
        switch (value)
        {
            case "todo": status = TodoStatus.Todo; return true;
            case "in_progress": status = TodoStatus.InProgress; return true;
            case "done": status = TodoStatus.Done; return true;
            case "cancelled": status = TodoStatus.Cancelled; return true;
            default: status = default; return false;
        }
    }

    internal static string Truncate(string value) => value.Length <= 40 ? value : value[..40] + "...";
}
