using System.Text.Json;
using TodoScale.Archiver.Telemetry;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>A column of an exported table, as format_type prints it; a restore needs the same columns in the same order.</summary>
public sealed record ColdColumn(string Name, string Type);

/// <summary>One archive table's partition of the month, exported to <see cref="File"/> (gzip-compressed CSV with a header line).</summary>
/// <param name="ContentChecksum">
/// md5 over the sums of the first and second halves of md5(ROW(columns)::text) of every row (UTC, ISO dates):
/// independent of row order and computed by the database, on the partition and on the file loaded back.
/// </param>
/// <param name="PartitionBytes">The partition's size on disk (table, indexes, TOAST) when it was exported.</param>
public sealed record ColdTableFile(
    string Table,
    string Partition,
    string File,
    long Rows,
    string ContentChecksum,
    long FileBytes,
    string FileSha256,
    long PartitionBytes,
    IReadOnlyList<ColdColumn> Columns);

/// <summary>manifest.json of an exported month: written last, after every file was read back and verified.</summary>
public sealed record ColdManifest(
    int Format,
    string Month,
    string SchemaVersion,
    DateTimeOffset ExportedAt,
    DateTimeOffset VerifiedAt,
    IReadOnlyList<ColdTableFile> Tables)
{
    public const string FileName = "manifest.json";
    public const int CurrentFormat = 1;

    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web)
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
    };

    // Rows, bytes and the ratio are written for people and tools, and recomputed from the tables on read.
    public long Rows => Tables.Sum(t => t.Rows);

    public long FileBytes => Tables.Sum(t => t.FileBytes);

    public long PartitionBytes => Tables.Sum(t => t.PartitionBytes);

    /// <summary>Size on disk of the partitions over the size of their exported files.</summary>
    /// <summary>The month's sizes, for the cold-storage gauges.</summary>
    public ColdMonthSize Size => new(Month, FileBytes, PartitionBytes);

    public double CompressionRatio => FileBytes == 0 ? 0 : (double)PartitionBytes / FileBytes;

    public string ToJson() => JsonSerializer.Serialize(this, Json);

    public static ColdManifest FromJson(string json) =>
        JsonSerializer.Deserialize<ColdManifest>(json, Json) ?? throw new JsonException("empty manifest");
}
