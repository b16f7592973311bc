using Microsoft.AspNetCore.OpenApi;
using Microsoft.OpenApi;

namespace TodoScale.Api.OpenApi;

/// <summary>
/// Shows a PATCH field (<see cref="TodoScale.Api.Contracts.Optional{T}"/>) as the plain type it carries, and not
/// as required: leaving it out is the point of a partial update.
/// </summary>
internal sealed class OptionalSchemaTransformer : IOpenApiSchemaTransformer
{
    public async Task TransformAsync(OpenApiSchema schema, OpenApiSchemaTransformerContext context, CancellationToken cancellationToken)
    {
        var type = context.JsonTypeInfo.Type;
        if (IsOptional(type))
        {
            var inner = await context.GetOrCreateSchemaAsync(type.GetGenericArguments()[0], null, cancellationToken);
            schema.Type = inner.Type;
            schema.Format = inner.Format;
            schema.Properties = inner.Properties;
            schema.Required = inner.Required;
            return;
        }

        if (schema.Required is { Count: > 0 } required)
        {
            foreach (var property in context.JsonTypeInfo.Properties.Where(p => IsOptional(p.PropertyType)))
            {
                required.Remove(property.Name);
            }
        }
    }

    private static bool IsOptional(Type type) =>
        type.IsGenericType && type.GetGenericTypeDefinition() == typeof(TodoScale.Api.Contracts.Optional<>);
}
