using Npgsql;

namespace TodoScale.Data.Schema;

/// <summary>A partition as pg_inherits and pg_class have it: its name, oid and bound ("FOR VALUES WITH (modulus 16, remainder 3)").</summary>
public sealed record CatalogPartition(string Name, uint Oid, string Bound);

/// <summary>A foreign key as pg_constraint has it: its name and definition (pg_get_constraintdef), and the table it references.</summary>
public sealed record CatalogForeignKey(string Name, string Definition, string References);

/// <summary>
/// What TodoScale's programs read from PostgreSQL's catalog rather than re-type: a table's columns, its partitions,
/// its foreign keys; and the two one-statement helpers every DDL step uses.
/// </summary>
public static class Catalog
{
    /// <summary>The columns of <paramref name="table"/> in order, with their types as format_type writes them.</summary>
    public static async Task<List<(string Name, string Type)>> ColumnsAsync(
        NpgsqlConnection connection, NpgsqlTransaction? transaction, string table, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
             WHERE a.attrelid = @table::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        var columns = new List<(string, string)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            columns.Add((reader.GetString(0), reader.GetString(1)));
        }

        return columns;
    }

    /// <summary>The partitions attached to <paramref name="parent"/> now, by name.</summary>
    public static async Task<List<CatalogPartition>> PartitionsAsync(NpgsqlConnection connection, string parent, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT c.relname, c.oid, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = @parent::regclass ORDER BY c.relname
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("parent", parent));
        var partitions = new List<CatalogPartition>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            partitions.Add(new CatalogPartition(reader.GetString(0), reader.GetFieldValue<uint>(1), reader.GetString(2)));
        }

        return partitions;
    }

    /// <summary>The foreign keys defined on <paramref name="table"/> itself (for a partition: its own and those it inherited), by name.</summary>
    public static async Task<List<CatalogForeignKey>> ForeignKeysAsync(
        NpgsqlConnection connection, NpgsqlTransaction? transaction, string table, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT conname, pg_get_constraintdef(oid), confrelid::regclass::text FROM pg_constraint
             WHERE conrelid = @table::regclass AND contype = 'f' ORDER BY conname
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        var keys = new List<CatalogForeignKey>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            keys.Add(new CatalogForeignKey(reader.GetString(0), reader.GetString(1), reader.GetString(2)));
        }

        return keys;
    }

    /// <summary>Runs one statement (DDL spliced from catalog names: <see cref="SqlText"/> quotes them).</summary>
    public static async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The first column of the first row, or default when it is NULL or there is none.</summary>
    public static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is DBNull or null ? default! : (T)value;
    }
}
