using System.Text.Json;
using System.Text.Json.Serialization;

namespace TodoScale.Api.Contracts;

/// <summary>
/// A field of a partial update (PATCH): absent from the JSON means "leave it as it is", present (even as null)
/// means "set it to this". A nullable property cannot tell the two apart, and clearing a due date needs both.
/// </summary>
[JsonConverter(typeof(OptionalJsonConverterFactory))]
public readonly struct Optional<T>
{
    public Optional(T? value)
    {
        IsSet = true;
        Value = value;
    }

    public bool IsSet { get; }

    public T? Value { get; }

    public T? Or(T? current) => IsSet ? Value : current;
}

internal sealed class OptionalJsonConverterFactory : JsonConverterFactory
{
    public override bool CanConvert(Type typeToConvert) =>
        typeToConvert.IsGenericType && typeToConvert.GetGenericTypeDefinition() == typeof(Optional<>);

    public override JsonConverter CreateConverter(Type typeToConvert, JsonSerializerOptions options) =>
        (JsonConverter)Activator.CreateInstance(typeof(OptionalJsonConverter<>).MakeGenericType(typeToConvert.GetGenericArguments()[0]))!;

    private sealed class OptionalJsonConverter<T> : JsonConverter<Optional<T>>
    {
        // Called for null too, so an explicit null is "set to null", not "absent".
        public override bool HandleNull => true;

        // The value's own converter, not a nested Deserialize: a value that does not read fails with the field's path
        // ("$.description"), as any other field's would.
        public override Optional<T> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
            new(reader.TokenType == JsonTokenType.Null ? default : ((JsonConverter<T>)options.GetConverter(typeof(T))).Read(ref reader, typeof(T), options));

        public override void Write(Utf8JsonWriter writer, Optional<T> value, JsonSerializerOptions options) =>
            JsonSerializer.Serialize(writer, value.Value, options);
    }
}
