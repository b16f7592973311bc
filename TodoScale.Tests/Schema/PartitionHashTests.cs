using Npgsql;
using NpgsqlTypes;
using TodoScale.Data.Partitioning;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Schema;

/// <summary>PartitionHash, the C# port of PostgreSQL's hash routing, checked against the server itself.</summary>
[Collection(PostgresCollection.Name)]
public sealed class PartitionHashTests(PostgresServer server, ITestOutputHelper output)
{
    [Theory]
    [InlineData(16)]
    [InlineData(32)]
    [InlineData(64)]
    public async Task Agrees_with_satisfies_hash_partition_for_10000_uuids(int modulus)
    {
        var random = new Random(modulus);
        var ids = Enumerable.Range(0, 10_000)
            .Select(i => i % 2 == 0 ? Guid.CreateVersion7() : new Guid(random.GetItems<byte>(Enumerable.Range(0, 256).Select(b => (byte)b).ToArray(), 16)))
            .Append(Guid.Empty).Append(Guid.AllBitsSet)
            .ToArray();
        var remainders = ids.Select(id => PartitionHash.PartitionIndex(id, modulus)).ToArray();

        await using var connection = await Sql.OpenAsync(await server.MigratedDatabaseForAsync(GetType()));
        await using var command = new NpgsqlCommand("""
            SELECT count(*) FILTER (WHERE satisfies_hash_partition('todos_active'::regclass, @modulus, r, id)),
                   count(*) FILTER (WHERE satisfies_hash_partition('todos_active'::regclass, @modulus, (r + 1) % @modulus, id))
            FROM unnest(@ids, @remainders) AS t(id, r)
            """, connection);
        command.Parameters.Add(new NpgsqlParameter("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = ids });
        command.Parameters.AddWithValue("remainders", remainders);
        command.Parameters.AddWithValue("modulus", modulus);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        var (agree, neighbour) = (reader.GetInt64(0), reader.GetInt64(1));

        output.WriteLine($"modulus {modulus}: {agree} of {ids.Length} agree, {ids.Length - agree} mismatches; distinct remainders {remainders.Distinct().Count()}");
        Assert.Equal(ids.Length, agree);
        Assert.Equal(0, neighbour); // the check can fail: the next remainder is never accepted
        Assert.Equal(modulus, remainders.Distinct().Count());
    }

    [Fact]
    public async Task Names_the_partition_PostgreSQL_stores_each_row_in()
    {
        var users = Enumerable.Range(0, 2000).Select(_ => Guid.CreateVersion7()).ToArray();
        await using var connection = await Sql.OpenAsync(await server.MigratedDatabaseForAsync(GetType()));
        await using (var copy = await connection.BeginBinaryImportAsync("COPY todos_active (user_id, id, title) FROM STDIN (FORMAT BINARY)"))
        {
            foreach (var user in users)
            {
                await copy.WriteRowAsync(default, user, Guid.CreateVersion7(), "routing probe");
            }

            await copy.CompleteAsync();
        }

        await using var command = new NpgsqlCommand("SELECT user_id, tableoid::regclass::text FROM todos_active WHERE title = 'routing probe'", connection);
        await using var reader = await command.ExecuteReaderAsync();
        var rows = 0;
        var mismatches = new List<string>();
        while (await reader.ReadAsync())
        {
            rows++;
            var (user, partition) = (reader.GetGuid(0), reader.GetString(1));
            if (PartitionHash.PartitionName("todos_active", user, 16) != partition)
            {
                mismatches.Add($"{user}: PostgreSQL {partition}, PartitionHash {PartitionHash.PartitionName("todos_active", user, 16)}");
            }
        }

        output.WriteLine($"{rows} rows stored, {mismatches.Count} in a partition PartitionHash did not predict");
        Assert.Equal(users.Length, rows);
        Assert.Empty(mismatches);
    }
}
