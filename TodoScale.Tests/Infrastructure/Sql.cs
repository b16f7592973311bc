using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>One-statement helpers for tests that only need a single value back.</summary>
internal static class Sql
{
    public static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public static async Task<T> ScalarAsync<T>(string connectionString, string sql)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        return await ScalarAsync<T>(connection, sql);
    }
}
