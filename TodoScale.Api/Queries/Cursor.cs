using System.Buffers.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TodoScale.Api.Queries;

/// <summary>
/// The opaque keyset cursor of a list: the sort it belongs to and the last row's sort key, as base64url JSON.
/// It carries no secret (row-level security limits any cursor to its user's rows) but is checked strictly: a
/// cursor from another sort or list is a 400, never a silently wrong page.
/// </summary>
public sealed record Cursor(
    [property: JsonPropertyName("l")] string List,
    [property: JsonPropertyName("s")] string Sort,
    [property: JsonPropertyName("a")] bool IncludeArchived,
    [property: JsonPropertyName("c")] DateTimeOffset CreatedAt,
    [property: JsonPropertyName("i")] Guid Id,
    [property: JsonPropertyName("d")] DateTimeOffset? DueDate = null,
    [property: JsonPropertyName("p")] short? Priority = null,
    [property: JsonPropertyName("n")] string? Name = null)
{
    private static readonly JsonSerializerOptions Options = new()
    {
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    };

    public string Encode() => Base64Url.EncodeToString(JsonSerializer.SerializeToUtf8Bytes(this, Options));

    /// <summary>Decodes a cursor for <paramref name="list"/>/<paramref name="sort"/>, or explains why it cannot be used.</summary>
    public static bool TryDecode(string? text, string list, string sort, bool includeArchived, out Cursor? cursor, out string? error)
    {
        cursor = null;
        error = null;
        if (text is null)
        {
            return true;
        }

        try
        {
            cursor = JsonSerializer.Deserialize<Cursor>(Base64Url.DecodeFromChars(text), Options);
        }
        catch (Exception e) when (e is FormatException or JsonException or ArgumentException)
        {
            cursor = null;
        }

        if (cursor is null || cursor.List is null || cursor.Sort is null || cursor.Id == Guid.Empty)
        {
            cursor = null;
            error = "The cursor is not one this API issued; pass nextCursor from a previous page as it is.";
            return false;
        }

        if (cursor.List != list || cursor.Sort != sort || cursor.IncludeArchived != includeArchived)
        {
            cursor = null;
            error = "The cursor belongs to a different list, sort or include_archived; keep them the same while paging.";
            return false;
        }

        return true;
    }
}
