using System.Globalization;
using System.Text;
using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Data.Schema;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Partitions;

/// <summary>Steps 3 to 5 of a partition's split: the foreign keys, the swap, the finish.</summary>
public sealed partial class PartitionSplit
{
    /// <summary>
    /// Step 3: each new child gets the old child's foreign keys, read from the catalog (V2's project key, inherited,
    /// under its own name; V11's subtask key to the partition itself, pointed at the new child and named after it),
    /// identical to what the parent has so ATTACH adopts them without a scan. Added NOT VALID under a short lock,
    /// validated without blocking writes.
    /// </summary>
    private async Task AddForeignKeysAsync(string table, int remainder, int[] targets, CancellationToken cancellationToken)
    {
        var old = Name(table, remainder);
        List<CatalogForeignKey> keys;
        await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
        {
            keys = await ForeignKeysAsync(connection, null, old, cancellationToken);
        }

        foreach (var target in targets)
        {
            var next = NextName(table, target);
            foreach (var (name, definition) in keys.Select(key => ForNewChild(key, old, Name(table, target), next)))
            {
                bool? validated;
                await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
                await using (var command = new NpgsqlCommand(
                    "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(@table) AND conname = @name", connection))
                {
                    command.Parameters.Add(new NpgsqlParameter<string>("table", next));
                    command.Parameters.Add(new NpgsqlParameter<string>("name", name));
                    validated = await command.ExecuteScalarAsync(cancellationToken) as bool?;
                }

                if (validated is null)
                {
                    await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, async (connection, transaction) =>
                    {
                        await using var add = new NpgsqlCommand($"ALTER TABLE {Quote(next)} ADD CONSTRAINT {Quote(name)} {definition} NOT VALID", connection, transaction);
                        await add.ExecuteNonQueryAsync(cancellationToken);
                    }, cancellationToken);
                }

                if (validated is not true)
                {
                    await using var connection = await owner.OpenConnectionAsync(cancellationToken);
                    await using var validate = new NpgsqlCommand($"ALTER TABLE {Quote(next)} VALIDATE CONSTRAINT {Quote(name)}", connection) { CommandTimeout = 0 };
                    await validate.ExecuteNonQueryAsync(cancellationToken);
                }
            }
        }
    }

    /// <summary>
    /// The old child's foreign key as the new child <paramref name="next"/> (final name <paramref name="final"/>) has
    /// it: a key to another table as it is; a key to the old child itself (subtask to parent, V11) to the new child,
    /// its name following the child's ("todos_active_p03_parent_fkey" -> "todos_active_p19_parent_fkey").
    /// </summary>
    internal static (string Name, string Definition) ForNewChild(CatalogForeignKey key, string old, string final, string next)
    {
        if (key.References != old && key.References != Quote(old))
        {
            return (key.Name, key.Definition);
        }

        var references = $"REFERENCES {old}(";
        return key.Definition.Contains(references, StringComparison.Ordinal) && key.Name.StartsWith(old, StringComparison.Ordinal)
            ? (final + key.Name[old.Length..], key.Definition.Replace(references, $"REFERENCES {Quote(next)}(", StringComparison.Ordinal))
            : throw new SplitRefusedException($"{old} has a foreign key to itself that the split does not know how to carry over: {key.Name} {key.Definition}");
    }

    /// <summary>Step 4, one short transaction under lock_timeout: the old child out, the new ones in (no scan), the bound CHECKs dropped.</summary>
    private async Task<LockBoundResult> SwapAsync(string table, int oldModulus, int remainder, int to, int[] targets, CancellationToken cancellationToken)
    {
        await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
        {
            var analyze = string.Join(", ", targets.Select(t => Quote(NextName(table, t))));
            await using var command = new NpgsqlCommand($"ANALYZE {analyze}", connection) { CommandTimeout = 0 };
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        var old = Name(table, remainder);
        var sql = new StringBuilder();
        sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER TABLE {Quote(table)} DETACH PARTITION {Quote(old)};");
        // Detached, the old child keeps its own foreign keys (a project's delete still sets its rows' project_id), and
        // its trigger would repeat that into the new children under names they no longer have: it goes now.
        sql.AppendLine(CultureInfo.InvariantCulture, $"DROP TRIGGER {MirrorTrigger} ON {Quote(old)};");
        sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER TABLE {Quote(old)} RENAME TO {Quote(OldName(table, remainder))};");
        foreach (var target in targets)
        {
            var name = Name(table, target);
            sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER TABLE {Quote(NextName(table, target))} RENAME TO {Quote(name)};");
            sql.AppendLine(CultureInfo.InvariantCulture,
                $"ALTER TABLE {Quote(table)} ATTACH PARTITION {Quote(name)} FOR VALUES WITH (MODULUS {to}, REMAINDER {target});");
            sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER TABLE {Quote(name)} DROP CONSTRAINT {BoundCheck};");
        }

        sql.AppendLine(CultureInfo.InvariantCulture,
            $"UPDATE partition_split SET step = {Literal(SplitStep.Swapped.Text())}, updated_at = now() WHERE table_name = {Literal(table)} AND old_modulus = {oldModulus} AND remainder = {remainder};");
        return await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand(sql.ToString(), connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);
    }

    /// <summary>Step 5: the detached old child and its trigger function dropped; the new children's indexes renamed as PostgreSQL would have named them.</summary>
    private async Task FinishAsync(string table, int oldModulus, int remainder, int[] targets, CancellationToken cancellationToken)
    {
        await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, async (connection, transaction) =>
        {
            var sql = new StringBuilder();
            sql.AppendLine(CultureInfo.InvariantCulture, $"DROP TABLE IF EXISTS {Quote(OldName(table, remainder))};");
            sql.AppendLine(CultureInfo.InvariantCulture, $"DROP FUNCTION IF EXISTS {Quote(MirrorFunction(table, remainder))}();");
            await using (var indexes = new NpgsqlCommand(
                """
                SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
                 WHERE x.indrelid = ANY(@tables::regclass[]) AND i.relname LIKE @prefix || '%'
                """, connection, transaction))
            {
                indexes.Parameters.Add(new NpgsqlParameter<string[]>("tables", targets.Select(t => Name(table, t)).ToArray()));
                indexes.Parameters.Add(new NpgsqlParameter<string>("prefix", $"{table}\\_next\\_p"));
                await using var reader = await indexes.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                    var index = reader.GetString(0);
                    var renamed = string.Concat(table, "_p", index.AsSpan(table.Length + "_next_p".Length));
                    sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER INDEX {Quote(index)} RENAME TO {Quote(renamed)};");
                }
            }

            sql.AppendLine(CultureInfo.InvariantCulture,
                $"UPDATE partition_split SET step = {Literal(SplitStep.Done.Text())}, updated_at = now(), finished_at = now() WHERE table_name = {Literal(table)} AND old_modulus = {oldModulus} AND remainder = {remainder};");
            await using var command = new NpgsqlCommand(sql.ToString(), connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);
    }
}
