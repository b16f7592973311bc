using System.Globalization;
using Npgsql;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Schema;

namespace TodoScale.Archiver.Maintenance;

/// <summary>A btree index of a hot table with its measured leaf density and the bloat that implies.</summary>
public sealed record IndexBloat(string Index, string Table, long Bytes, double LeafDensity, int FillFactor)
{
    /// <summary>On Citus, the worker holding this shard's index (host and port); null on one PostgreSQL.</summary>
    public (string Host, int Port)? Node { get; init; }

    /// <summary>How much emptier the leaf pages are than the fillfactor leaves them: 0 for a freshly built index.</summary>
    public double BloatPercent => Math.Max(0, 100 * (1 - LeafDensity / FillFactor));
}

/// <summary>
/// The weekly reindex: measures the leaf density of every btree index on the hot tables (the partitions of
/// todos_active and ai_interactions, and projects) with pgstattuple's pgstatindex, and rebuilds with REINDEX
/// INDEX CONCURRENTLY those over <see cref="MaintenanceOptions.ReindexBloatPercent"/>. Archive months are not
/// measured: they are written once, in order. Runs as the tables' owner (REINDEX needs it).
/// On Citus the indexes that hold rows are the shards' on the workers: each shard's indexes are measured where they
/// are (run_command_on_placements) and a bloated one is rebuilt there, on its worker alone (master_run_on_worker).
/// </summary>
public sealed class IndexMaintenance(NpgsqlDataSource owner, MaintenanceOptions options)
{
    /// <summary>Null when bloat can be measured here, else why not (the reindex step is then skipped).</summary>
    public async Task<string?> UnavailableAsync(CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            """
            SELECT CASE
                WHEN NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'pgstattuple') THEN 'the pgstattuple extension is not installed'
                WHEN NOT pg_has_role(current_user, 'pg_stat_scan_tables', 'USAGE')
                 AND NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN current_user || ' is not a member of pg_stat_scan_tables'
            END
            """);
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }

    /// <summary>Every measured index (at least <see cref="MaintenanceOptions.ReindexMinBytes"/>), most bloated first.</summary>
    public async Task<List<IndexBloat>> MeasureAsync(CancellationToken cancellationToken)
    {
        await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
        {
            if (await CitusLayout.IsCitusAsync(connection, cancellationToken))
            {
                return await MeasureShardsAsync(connection, cancellationToken);
            }
        }

        await using var command = owner.CreateCommand(
            """
            WITH hot AS (
                SELECT i.inhrelid AS oid FROM pg_inherits i
                 WHERE i.inhparent IN ('todos_active'::regclass, 'ai_interactions'::regclass)
                UNION ALL SELECT 'projects'::regclass
            )
            SELECT ix.indexrelid::regclass::text, ix.indrelid::regclass::text, pg_relation_size(ix.indexrelid),
                   s.avg_leaf_density,
                   coalesce((SELECT split_part(o, '=', 2)::int FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%'), 90)
              FROM pg_index ix
              JOIN hot ON hot.oid = ix.indrelid
              JOIN pg_class c ON c.oid = ix.indexrelid
              JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
             CROSS JOIN LATERAL pgstatindex(ix.indexrelid) s
             WHERE ix.indisvalid AND pg_relation_size(ix.indexrelid) >= @min_bytes
            """);
        command.Parameters.Add(new NpgsqlParameter<long>("min_bytes", options.ReindexMinBytes));
        var measured = new List<IndexBloat>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var density = reader.GetDouble(3);
            if (!double.IsNaN(density))
            {
                measured.Add(new IndexBloat(reader.GetString(0), reader.GetString(1), reader.GetInt64(2), density, reader.GetInt32(4)));
            }
        }

        return [.. measured.OrderByDescending(m => m.BloatPercent)];
    }

    /// <summary>Rebuilds every index over the threshold, one at a time, without blocking writes; returns them as measured before.</summary>
    public async Task<List<IndexBloat>> ReindexBloatedAsync(IProgress<string>? progress, CancellationToken cancellationToken)
    {
        var bloated = (await MeasureAsync(cancellationToken)).Where(m => m.BloatPercent >= options.ReindexBloatPercent).ToList();
        foreach (var index in bloated)
        {
            progress?.Report(string.Create(CultureInfo.InvariantCulture, $"reindexing {index.Index} ({index.BloatPercent:0}% bloat, {index.Bytes / 1024.0 / 1024.0:0.0} MB)"));
            if (index.Node is { } node)
            {
                await ReindexOnWorkerAsync(index.Index, node, cancellationToken);
                continue;
            }

            await using var command = owner.CreateCommand($"REINDEX INDEX CONCURRENTLY {index.Index}");
            command.CommandTimeout = 0;
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        return bloated;
    }

    /// <summary>The hot tables on Citus: one distributed table each, whose shards' indexes are on the workers.</summary>
    private static readonly string[] HotTables = ["todos_active", "ai_interactions", "projects"];

    /// <summary>
    /// Every btree index of every shard of the hot tables, measured on the worker that holds it: one command per
    /// placement, its result one entry per index ("index bytes density fillfactor", ';' between them).
    /// </summary>
    private async Task<List<IndexBloat>> MeasureShardsAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        // %s is the shard's name (run_command_on_placements formats the command with it), %% a percent sign.
        var perShard = string.Create(CultureInfo.InvariantCulture, $$"""
            SELECT coalesce(string_agg(concat_ws(' ', ix.indexrelid::regclass::text, pg_relation_size(ix.indexrelid), s.avg_leaf_density,
                       coalesce((SELECT split_part(o, '=', 2) FROM unnest(c.reloptions) o WHERE o LIKE 'fillfactor=%%'), '90')), ';'), '')
              FROM pg_index ix
              JOIN pg_class c ON c.oid = ix.indexrelid
              JOIN pg_am am ON am.oid = c.relam AND am.amname = 'btree'
             CROSS JOIN LATERAL pgstatindex(ix.indexrelid) s
             WHERE ix.indrelid = '%s'::regclass AND ix.indisvalid AND pg_relation_size(ix.indexrelid) >= {{options.ReindexMinBytes}}
            """);
        await using var command = new NpgsqlCommand(
            """
            SELECT t, r.shardid, r.nodename, r.nodeport, r.success, r.result
              FROM unnest(@tables) t
             CROSS JOIN LATERAL run_command_on_placements(t::regclass, @command) r
            """, connection);
        command.Parameters.AddWithValue("tables", HotTables);
        command.Parameters.AddWithValue("command", perShard);
        command.CommandTimeout = 0;
        var measured = new List<IndexBloat>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var (table, shard, host, port, success, result) = (reader.GetString(0), reader.GetInt64(1), reader.GetString(2), reader.GetInt32(3), reader.GetBoolean(4), reader.GetString(5));
            if (!success)
            {
                throw new InvalidOperationException($"measuring the indexes of {table}'s shard {shard} on {host}:{port} failed: {result}");
            }

            foreach (var entry in result.Split(';', StringSplitOptions.RemoveEmptyEntries))
            {
                var fields = entry.Split(' ');
                var density = double.Parse(fields[2], CultureInfo.InvariantCulture);
                if (!double.IsNaN(density))
                {
                    measured.Add(new IndexBloat(fields[0], $"{table}_{shard}", long.Parse(fields[1], CultureInfo.InvariantCulture), density,
                        int.Parse(fields[3], CultureInfo.InvariantCulture)) { Node = (host, port) });
                }
            }
        }

        return [.. measured.OrderByDescending(m => m.BloatPercent)];
    }

    /// <summary>REINDEX INDEX CONCURRENTLY of one shard's index, on its worker alone, outside a transaction block.</summary>
    private async Task ReindexOnWorkerAsync(string index, (string Host, int Port) node, CancellationToken cancellationToken)
    {
        await using var command = owner.CreateCommand(
            "SELECT success, result FROM master_run_on_worker(ARRAY[@host], ARRAY[@port], ARRAY[@command], false)");
        command.Parameters.AddWithValue("host", node.Host);
        command.Parameters.AddWithValue("port", node.Port);
        command.Parameters.AddWithValue("command", $"REINDEX INDEX CONCURRENTLY {index}");
        command.CommandTimeout = 0;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        if (!await reader.ReadAsync(cancellationToken) || !reader.GetBoolean(0))
        {
            throw new InvalidOperationException($"REINDEX INDEX CONCURRENTLY {index} on {node.Host}:{node.Port} failed: {(reader.IsOnRow ? reader.GetString(1) : "no result")}");
        }
    }
}
