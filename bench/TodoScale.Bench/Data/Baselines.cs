using System.Diagnostics;
using Npgsql;
using TodoScale.Data.Legacy;
using TodoScale.Testing;

namespace TodoScale.Bench.Data;

/// <summary>
/// What a user would have instead, on the same rows: `bench_todos_flat`, todos_active's rows in one unpartitioned
/// table with the same indexes; and the original design's single `todos` table (primary key only) holding every
/// todo, active and archived.
/// </summary>
public static class Baselines
{
    public const string Flat = "bench_todos_flat";

    public static async Task<TimeSpan> CreateAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        await ExecuteAsync(connection, $"""
            DROP TABLE IF EXISTS {Flat};
            CREATE TABLE {Flat} (LIKE todos_active INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
            INSERT INTO {Flat} SELECT * FROM todos_active;
            """, cancellationToken);

        // Every index of the partitioned parent, as the same definition on the flat table.
        var definitions = new List<string>();
        await using (var command = new NpgsqlCommand(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'todos_active'::regclass ORDER BY 1",
            connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                definitions.Add(reader.GetString(1)
                    .Replace($" {reader.GetString(0)} ", $" {reader.GetString(0).Replace("todos_active", Flat, StringComparison.Ordinal)} ", StringComparison.Ordinal)
                    .Replace("ON ONLY public.todos_active ", $"ON public.{Flat} ", StringComparison.Ordinal));
            }
        }

        foreach (var definition in definitions)
        {
            await ExecuteAsync(connection, definition, cancellationToken);
        }

        await ExecuteAsync(connection, $"""
            DROP TABLE IF EXISTS {LegacySchema.Table};
            {LegacyTable.CreateTable};
            INSERT INTO {LegacySchema.Table} ({LegacySchema.Columns})
                SELECT {LegacySchema.Columns} FROM todos_active
                UNION ALL SELECT {LegacySchema.Columns} FROM todos_archived;
            """, cancellationToken);
        await ExecuteAsync(connection, $"VACUUM ANALYZE {Flat}", cancellationToken);
        await ExecuteAsync(connection, $"VACUUM ANALYZE {LegacySchema.Table}", cancellationToken);
        return clock.Elapsed;
    }

    public static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection) { CommandTimeout = 0 };
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }
}
