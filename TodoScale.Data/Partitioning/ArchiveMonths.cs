using System.Globalization;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Data.Schema;

namespace TodoScale.Data.Partitioning;

/// <summary>
/// The monthly partitions of the archive tables: todos_archived_y2026m11 holds the rows archived in November 2026
/// (UTC). Names, bounds and upkeep in one place for the archiver, retention and cold restore.
/// </summary>
public static class ArchiveMonths
{
    /// <summary>The archive tables, each range-partitioned by archived_at into months.</summary>
    public static readonly IReadOnlyList<string> Tables = ["todos_archived", "ai_interactions_archived"];

    public static string PartitionName(string archiveTable, DateTimeOffset at) =>
        PartitionName(archiveTable, MonthOf(at));

    public static string PartitionName(string archiveTable, DateOnly month) =>
        string.Create(CultureInfo.InvariantCulture, $"{archiveTable}_y{month.Year:0000}m{month.Month:00}");

    /// <summary>The first day of the UTC month <paramref name="at"/> falls in.</summary>
    public static DateOnly MonthOf(DateTimeOffset at) => new(at.UtcDateTime.Year, at.UtcDateTime.Month, 1);

    /// <summary>"2024-01" as the first day of that month, or null when it is not a month in that form.</summary>
    public static DateOnly? Parse(string text) =>
        DateOnly.TryParseExact(text.Trim(), "yyyy-MM", CultureInfo.InvariantCulture, DateTimeStyles.None, out var month) ? month : null;

    public static string Format(DateOnly month) => month.ToString("yyyy-MM", CultureInfo.InvariantCulture);

    /// <summary>The month of a partition named by <see cref="PartitionName(string, DateOnly)"/>, or null for any other name.</summary>
    public static DateOnly? MonthOfPartition(string archiveTable, string partition) =>
        partition.StartsWith(archiveTable + "_y", StringComparison.Ordinal)
        && DateOnly.TryParseExact(partition[(archiveTable.Length + 2)..], "yyyy'm'MM", CultureInfo.InvariantCulture, DateTimeStyles.None, out var month)
            ? month
            : null;

    /// <summary>The partition bounds: midnight UTC on the first of the month to the first of the next.</summary>
    public static (DateTimeOffset From, DateTimeOffset To) Bounds(DateOnly month) =>
        (new DateTimeOffset(month.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero),
         new DateTimeOffset(month.AddMonths(1).ToDateTime(TimeOnly.MinValue), TimeSpan.Zero));

    /// <summary>Makes the month of <paramref name="now"/> and <paramref name="premake"/> months after it, for both archive tables. Idempotent.</summary>
    public static async Task<int> EnsureAsync(NpgsqlDataSource dataSource, DateTimeOffset now, int premake, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            """
            SELECT todoscale_ensure_archive_months('todos_archived', @day, @ahead)
                 + todoscale_ensure_archive_months('ai_interactions_archived', @day, @ahead)
            """);
        command.Parameters.Add(new NpgsqlParameter<DateOnly>("day", NpgsqlDbType.Date) { TypedValue = DateOnly.FromDateTime(now.UtcDateTime) });
        command.Parameters.Add(new NpgsqlParameter<int>("ahead", NpgsqlDbType.Integer) { TypedValue = premake });
        return (int)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    /// <summary>The months that have a partition of <paramref name="archiveTable"/> attached now, oldest first.</summary>
    public static async Task<List<DateOnly>> AttachedAsync(NpgsqlDataSource dataSource, string archiveTable, CancellationToken cancellationToken)
    {
        await using var connection = await dataSource.OpenConnectionAsync(cancellationToken);
        var months = (await Catalog.PartitionsAsync(connection, archiveTable, cancellationToken))
            .Select(p => MonthOfPartition(archiveTable, p.Name)).OfType<DateOnly>().ToList();
        months.Sort();
        return months;
    }
}
