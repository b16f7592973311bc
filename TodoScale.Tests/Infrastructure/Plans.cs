using System.Text.Json;
using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>What a query plan touches, read from EXPLAIN (FORMAT JSON): the relations scanned, the indexes used and how many partitions were pruned at executor start.</summary>
internal sealed record Plan(IReadOnlyList<string> Relations, IReadOnlyList<string> Indexes, int SubplansRemoved, string Json)
{
    public static async Task<Plan> ExplainAsync(NpgsqlConnection connection, string statement, NpgsqlTransaction? transaction = null)
    {
        var json = await Sql.ScalarAsync<string>(connection, $"EXPLAIN (FORMAT JSON) {statement}", transaction);
        var relations = new List<string>();
        var indexes = new List<string>();
        var removed = 0;
        using var document = JsonDocument.Parse(json);
        Walk(document.RootElement[0].GetProperty("Plan"));
        return new Plan(relations, indexes, removed, json);

        void Walk(JsonElement node)
        {
            if (node.TryGetProperty("Relation Name", out var relation))
            {
                relations.Add(relation.GetString()!);
            }

            if (node.TryGetProperty("Index Name", out var index))
            {
                indexes.Add(index.GetString()!);
            }

            if (node.TryGetProperty("Subplans Removed", out var subplans))
            {
                removed += subplans.GetInt32();
            }

            if (node.TryGetProperty("Plans", out var children))
            {
                foreach (var child in children.EnumerateArray())
                {
                    Walk(child);
                }
            }
        }
    }

    /// <summary>The plan as PostgreSQL prints it, for test output.</summary>
    public static async Task<string> TextAsync(NpgsqlConnection connection, string statement, NpgsqlTransaction? transaction = null) =>
        string.Join('\n', await Sql.ColumnAsync<string>(connection, $"EXPLAIN {statement}", transaction));
}
