using System.Collections;
using System.Reflection;
using System.Text.Json;

namespace TodoScale.Api.Contracts;

/// <summary>
/// The one rule for text PostgreSQL can store: no NUL character (a text value cannot hold U+0000: SQLSTATE 22021)
/// and well-formed Unicode (a lone surrogate has no UTF-8 form). Applied by <see cref="StorableTextFilter"/> to
/// every string an endpoint binds: route and query parameters, and every string field of a request body, however
/// deep (<c>subtasks[2].title</c>).
/// </summary>
public static class StorableText
{
    /// <summary>Why <paramref name="text"/> cannot be stored, or null when it can.</summary>
    public static string? Problem(string text)
    {
        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (c == '\0')
            {
                return $"The text holds a NUL character (U+0000) at position {i}, which cannot be stored; remove it.";
            }

            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                return $"The text is not valid Unicode: a lone surrogate (U+{(int)c:X4}) at position {i}.";
            }
        }

        return null;
    }

    /// <summary>Adds a <see cref="Validation"/> error for every string in <paramref name="value"/> that cannot be stored, under its JSON path.</summary>
    public static void Check(object? value, string path, Validation validation, int depth = 0)
    {
        switch (value)
        {
            case null:
                return;
            case string text:
                if (Problem(text) is { } problem)
                {
                    validation.Add(path, problem);
                }

                return;
            case IEnumerable items when depth < 8:
                var index = 0;
                foreach (var item in items)
                {
                    Check(item, $"{path}[{index++}]", validation, depth + 1);
                }

                return;
        }

        var type = value.GetType();
        if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Optional<>))
        {
            Check(type.GetProperty(nameof(Optional<object>.Value))!.GetValue(value), path, validation, depth);
        }
        else if (type.Namespace == typeof(StorableText).Namespace && depth < 8)
        {
            foreach (var property in Properties(type))
            {
                var name = JsonNamingPolicy.CamelCase.ConvertName(property.Name);
                Check(property.GetValue(value), path.Length == 0 ? name : $"{path}.{name}", validation, depth + 1);
            }
        }
    }

    private static PropertyInfo[] Properties(Type type) =>
        type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetIndexParameters().Length == 0).ToArray();
}

/// <summary>
/// Runs <see cref="StorableText"/> over an endpoint's arguments before its handler: a request with text that cannot
/// be stored is a 400 ValidationProblem naming each such field, never a database error.
/// </summary>
public sealed class StorableTextFilter : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        var validation = new Validation();
        var parameters = context.HttpContext.GetEndpoint()?.Metadata.GetMetadata<MethodInfo>()?.GetParameters();
        for (var i = 0; i < context.Arguments.Count; i++)
        {
            var argument = context.Arguments[i];
            if (argument is string)
            {
                StorableText.Check(argument, SnakeCase(parameters is { } p && i < p.Length ? p[i].Name ?? "value" : "value"), validation);
            }
            else if (argument?.GetType().Namespace == typeof(StorableText).Namespace)
            {
                StorableText.Check(argument, "", validation);
            }
        }

        return validation.IsValid ? await next(context) : TypedResults.ValidationProblem(validation.Errors);
    }

    /// <summary>Query parameters are snake_case on the wire (include_archived); C# names them in camelCase.</summary>
    private static string SnakeCase(string name) =>
        string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "_" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
}
