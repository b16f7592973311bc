using System.Globalization;
using System.Text;
using Npgsql;
using TodoScale.Archiver.Database;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Partitions;

/// <summary>Step 1 of a partition's split: the new children and the mirror trigger.</summary>
public sealed partial class PartitionSplit
{
    /// <summary>Step 1, one transaction: the new children, the mirror trigger (last: its lock blocks the old child's writers until commit) and the state row.</summary>
    private async Task PrepareAsync(string table, int oldModulus, int remainder, int to, int[] targets, CancellationToken cancellationToken)
    {
        var old = Name(table, remainder);
        string archiverRole;
        await using (var connection = await archiver.OpenConnectionAsync(cancellationToken))
        await using (var who = new NpgsqlCommand("SELECT current_user", connection))
        {
            archiverRole = (string)(await who.ExecuteScalarAsync(cancellationToken))!;
        }

        await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, async (connection, transaction) =>
        {
            var columns = await ColumnNamesAsync(connection, transaction, old, cancellationToken);
            var parentOid = await ScalarAsync<uint>(connection, transaction, $"SELECT {Literal(table)}::regclass::oid", cancellationToken);
            var sql = new StringBuilder();
            foreach (var target in targets)
            {
                var next = NextName(table, target);
                sql.AppendLine(CultureInfo.InvariantCulture, $"DROP TABLE IF EXISTS {Quote(next)};");
                sql.AppendLine(CultureInfo.InvariantCulture,
                    $"CREATE TABLE {Quote(next)} (LIKE {Quote(old)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING INDEXES INCLUDING STORAGE);");
                sql.AppendLine(CultureInfo.InvariantCulture,
                    $"ALTER TABLE {Quote(next)} ADD CONSTRAINT {BoundCheck} CHECK (satisfies_hash_partition({parentOid}::oid, {to}, {target}, user_id));");
                sql.AppendLine(CultureInfo.InvariantCulture, $"SELECT todoscale_secure_partition({Literal(table)}::regclass, {Literal(next)}::regclass);");
            }

            if (archiverRole != await ScalarAsync<string>(connection, transaction, "SELECT current_user", cancellationToken))
            {
                sql.AppendLine(CultureInfo.InvariantCulture, $"GRANT UPDATE ({LockColumn(table)}) ON {Quote(old)} TO {Quote(archiverRole)};");
            }

            sql.AppendLine(MirrorFunctionSql(table, remainder, parentOid, to, targets, columns));
            sql.AppendLine(CultureInfo.InvariantCulture, $"DROP TRIGGER IF EXISTS {MirrorTrigger} ON {Quote(old)};");
            sql.AppendLine(CultureInfo.InvariantCulture,
                $"CREATE TRIGGER {MirrorTrigger} AFTER INSERT OR UPDATE OR DELETE ON {Quote(old)} FOR EACH ROW EXECUTE FUNCTION {Quote(MirrorFunction(table, remainder))}();");
            sql.AppendLine(CultureInfo.InvariantCulture, $"ALTER TABLE {Quote(old)} ENABLE ALWAYS TRIGGER {MirrorTrigger};");
            sql.AppendLine(CultureInfo.InvariantCulture,
                $"""
                INSERT INTO partition_split (table_name, old_modulus, remainder, new_modulus, total)
                SELECT {Literal(table)}, {oldModulus}, {remainder}, {to}, greatest(c.reltuples, 0)::bigint FROM pg_class c WHERE c.oid = {Literal(old)}::regclass;
                """);
            await using var command = new NpgsqlCommand(sql.ToString(), connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);
    }

    /// <summary>
    /// The trigger function that keeps the new children equal to the old one: the writer's row, to the child it hashes
    /// to, with every column as written. SECURITY DEFINER (the writer may be the API, the archiver or the legacy
    /// trigger), with app.user_id set to the row's user for the new child's row-level security; the function's SET
    /// clause scopes that to the call.
    /// </summary>
    private static string MirrorFunctionSql(string table, int remainder, uint parentOid, int to, int[] targets, IReadOnlyList<string> columns)
    {
        var list = string.Join(", ", columns.Select(Quote));
        var values = string.Join(", ", columns.Select(c => "NEW." + Quote(c)));
        // At least two targets (the new modulus is a multiple of the old one): IF .. ELSIF .. ELSE, the last one unasked.
        var body = new StringBuilder();
        for (var i = 0; i < targets.Length; i++)
        {
            var next = Quote(NextName(table, targets[i]));
            body.Append(i == targets.Length - 1
                ? "    ELSE\n"
                : string.Create(CultureInfo.InvariantCulture, $"    {(i == 0 ? "IF" : "ELSIF")} satisfies_hash_partition({parentOid}::oid, {to}, {targets[i]}, row_user) THEN\n"));
            body.Append(CultureInfo.InvariantCulture,
                $"""
                        IF TG_OP = 'INSERT' THEN
                            INSERT INTO {next} ({list}) VALUES ({values});
                        ELSIF TG_OP = 'UPDATE' THEN
                            UPDATE {next} SET ({list}) = ROW({values}) WHERE user_id = OLD.user_id AND id = OLD.id;
                        ELSE
                            DELETE FROM {next} WHERE user_id = OLD.user_id AND id = OLD.id;
                        END IF;

                """);
        }

        body.Append("    END IF;\n");
        return $"""
            CREATE OR REPLACE FUNCTION {Quote(MirrorFunction(table, remainder))}() RETURNS trigger
            LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $mirror$
            DECLARE
                row_user uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
            BEGIN
                PERFORM set_config('app.user_id', row_user::text, true);
            {body}    RETURN NULL;
            END $mirror$;
            """;
    }
}
