namespace TodoScale.Archiver.Database;

/// <summary>
/// A table's content checksum, computed by the server: the md5 of each row's text, summed as two 64-bit halves
/// (so the order of the rows does not matter and a scan needs no sort), the two sums md5'd. Cold storage records it
/// in every manifest (so its form never changes) and `legacy validate` compares buckets of users by it.
/// </summary>
public static class RowChecksum
{
    /// <summary>The md5 of a row of <paramref name="columnList"/> as text.</summary>
    public static string RowHash(string columnList) => $"md5(ROW({columnList})::text)";

    /// <summary>The aggregate over a column <paramref name="hash"/> of <see cref="RowHash"/>es: the checksum, as text.</summary>
    public static string Aggregate(string hash) =>
        $"md5(coalesce(sum(('x' || substr({hash}, 1, 16))::bit(64)::bigint), 0)::text || ':' || " +
        $"coalesce(sum(('x' || substr({hash}, 17, 16))::bit(64)::bigint), 0)::text)";
}
