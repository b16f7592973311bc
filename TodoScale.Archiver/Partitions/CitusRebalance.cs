using System.Diagnostics;
using Npgsql;
using TodoScale.Data.Schema;
using static TodoScale.Data.Schema.Catalog;

namespace TodoScale.Archiver.Partitions;

/// <summary>Where the rebalance is: shard-group moves done of all, and the one moving now.</summary>
public sealed record RebalanceProgress(long Done, long Total, string? Moving);

/// <summary>What `partitions rebalance` did: the workers it added, the shard-group moves and how the shards lie now.</summary>
public sealed record RebalanceResult(IReadOnlyList<string> Added, long Moves, TimeSpan Elapsed, IReadOnlyList<(string Node, long Shards)> ShardsPerNode);

/// <summary>The rebalance cannot be done here (not a Citus cluster, a worker unreachable, a move that failed).</summary>
public sealed class RebalanceRefusedException(string message) : Exception(message);

/// <summary>
/// Growing a Citus cluster online, the Citus way: each new worker gets the database and the extension and joins the
/// cluster (citus_add_node, which copies the roles, functions and metadata to it), then Citus' background rebalancer
/// moves shard groups (a user's rows of every table move together) to even out the workers, by logical replication
/// (shard_transfer_mode force_logical): reads and writes go on during a move, and only its last step, the switch to
/// the new placement, blocks the moving shards' writes for a moment. Progress is read from Citus' own job catalog.
/// </summary>
public sealed class CitusRebalance(NpgsqlDataSource owner, string ownerConnectionString, TimeProvider clock)
{
    /// <summary>How often the job catalog is read while the moves run (progress for the operator, not a wait for state).</summary>
    public static readonly TimeSpan PollEvery = TimeSpan.FromMilliseconds(500);

    public async Task<RebalanceResult> RunAsync(IReadOnlyList<(string Host, int Port)> add, IProgress<RebalanceProgress>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        if (!await CitusLayout.IsCitusAsync(connection, cancellationToken))
        {
            throw new RebalanceRefusedException(
                "this database is one PostgreSQL, not a Citus cluster: it grows by more hash partitions on its server, " +
                "`partitions split --to N` (README, \"Re-splitting online\"); workers are added to a Citus coordinator");
        }

        // Every node a shard may move from or to commits synchronously, checked before anything is added or moved.
        await RefuseAsynchronousCommitAsync(connection, cancellationToken);
        var joining = new List<(string Host, int Port)>();
        foreach (var (host, port) in add)
        {
            if (await PrepareWorkerAsync(connection, host, port, cancellationToken))
            {
                joining.Add((host, port));
            }
        }

        var added = new List<string>();
        foreach (var (host, port) in joining)
        {
            await using var addNode = new NpgsqlCommand("SELECT citus_add_node(@host, @port)", connection);
            addNode.Parameters.AddWithValue("host", host);
            addNode.Parameters.AddWithValue("port", port);
            await addNode.ExecuteNonQueryAsync(cancellationToken);
            added.Add($"{host}:{port}");
        }

        await CitusLayout.GrantOnWorkersAsync(connection, cancellationToken);
        var job = await ScalarAsync<long?>(connection, null, "SELECT citus_rebalance_start(shard_transfer_mode => 'force_logical')", cancellationToken);
        long moves = 0;
        if (job is { } id)
        {
            moves = await FollowAsync(connection, id, progress, cancellationToken);
        }

        var shards = new List<(string, long)>();
        await using (var command = new NpgsqlCommand(
            "SELECT nodename || ':' || nodeport, count(*) FROM citus_shards WHERE citus_table_type = 'distributed' GROUP BY 1 ORDER BY 1", connection))
        await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
        {
            while (await reader.ReadAsync(cancellationToken))
            {
                shards.Add((reader.GetString(0), reader.GetInt64(1)));
            }
        }

        return new RebalanceResult(added, moves, Stopwatch.GetElapsedTime(started), shards);
    }

    /// <summary>
    /// What a node's sessions in this database would commit with, when a move could lose a write there: null when they
    /// commit synchronously. A move's last step blocks writes, reads the source's pg_current_wal_lsn() and switches once
    /// the target has applied that far (Citus 13.0's WaitForAllSubscriptionsToCatchUp); that is the WAL *write* position,
    /// and a commit with synchronous_commit = off returns before its record is written, so a write acknowledged just
    /// before the block can be left on the old placement and dropped with it. Seen here as 2 of 17,617 acknowledged rows
    /// missing after a rebalance on test servers that ran with synchronous_commit = off.
    /// </summary>
    private const string AsynchronousCommitQuery = """
        SELECT CASE WHEN current_setting('synchronous_commit') = 'off' THEN 'synchronous_commit = off'
                    ELSE (SELECT 'synchronous_commit = off for ' || string_agg(coalesce(r.rolname, 'every role'), ', ')
                            FROM pg_db_role_setting s LEFT JOIN pg_roles r ON r.oid = s.setrole
                           WHERE s.setdatabase IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
                             AND 'synchronous_commit=off' = ANY (s.setconfig)) END
        """;

    private static async Task RefuseAsynchronousCommitAsync(NpgsqlConnection coordinator, CancellationToken cancellationToken)
    {
        var problems = new List<string>();
        await using (var command = new NpgsqlCommand("SELECT nodename || ':' || nodeport, success, result FROM run_command_on_workers(@query) ORDER BY 1", coordinator))
        {
            command.Parameters.AddWithValue("query", AsynchronousCommitQuery.ReplaceLineEndings(" "));
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var (node, success, result) = (reader.GetString(0), reader.GetBoolean(1), reader.IsDBNull(2) ? "" : reader.GetString(2));
                if (!success)
                {
                    problems.Add($"worker {node} did not answer ({result})");
                }
                else if (result.Length > 0)
                {
                    problems.Add($"worker {node} runs with {result}");
                }
            }
        }

        ThrowIfAny(problems);
    }

    private static void ThrowIfAny(List<string> problems)
    {
        if (problems.Count > 0)
        {
            throw new RebalanceRefusedException(
                $"{string.Join("; ", problems)}. A shard move's switch waits for the WAL position a node has written, and a " +
                "commit with synchronous_commit = off can return before its record is written, so a write acknowledged just " +
                "before the switch could be lost. Set synchronous_commit = on there (ALTER SYSTEM SET synchronous_commit = on; " +
                "SELECT pg_reload_conf(); and ALTER ROLE/DATABASE ... RESET synchronous_commit), then run the rebalance again; " +
                "nothing was added or moved");
        }
    }

    /// <summary>Readies a worker to be: its database and extension, checked to commit synchronously. False when it already is a member.</summary>
    private async Task<bool> PrepareWorkerAsync(NpgsqlConnection coordinator, string host, int port, CancellationToken cancellationToken)
    {
        await using (var lookup = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_dist_node WHERE nodename = @host AND nodeport = @port)", coordinator))
        {
            lookup.Parameters.AddWithValue("host", host);
            lookup.Parameters.AddWithValue("port", port);
            if ((bool)(await lookup.ExecuteScalarAsync(cancellationToken))!)
            {
                return false;
            }
        }

        var database = coordinator.Database;
        var server = new NpgsqlConnectionStringBuilder(ownerConnectionString) { Host = host, Port = port, Database = "postgres", Pooling = false };
        try
        {
            await using (var maintenance = new NpgsqlConnection(server.ConnectionString))
            {
                await maintenance.OpenAsync(cancellationToken);
                await using var exists = new NpgsqlCommand("SELECT EXISTS (SELECT FROM pg_database WHERE datname = @name)", maintenance);
                exists.Parameters.AddWithValue("name", database);
                if (!(bool)(await exists.ExecuteScalarAsync(cancellationToken))!)
                {
                    await ExecuteAsync(maintenance, null, $"CREATE DATABASE \"{database.Replace("\"", "\"\"", StringComparison.Ordinal)}\"", cancellationToken);
                }
            }

            server.Database = database;
            await using var target = new NpgsqlConnection(server.ConnectionString);
            await target.OpenAsync(cancellationToken);
            await ExecuteAsync(target, null, "CREATE EXTENSION IF NOT EXISTS citus", cancellationToken);
            var asynchronous = await ScalarAsync<string?>(target, null, AsynchronousCommitQuery, cancellationToken);
            ThrowIfAny(asynchronous is null ? [] : [$"the new worker {host}:{port} runs with {asynchronous}"]);
        }
        catch (NpgsqlException e)
        {
            throw new RebalanceRefusedException($"the new worker {host}:{port} cannot be prepared ({e.Message}); nothing was added");
        }

        return true;
    }

    /// <summary>Reports the job's tasks until it has finished; throws with Citus' own message when a move failed.</summary>
    private async Task<long> FollowAsync(NpgsqlConnection connection, long job, IProgress<RebalanceProgress>? progress, CancellationToken cancellationToken)
    {
        while (true)
        {
            await using var command = new NpgsqlCommand(
                """
                SELECT j.state::text,
                       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status = 'done'),
                       (SELECT count(*) FROM pg_dist_background_task t WHERE t.job_id = j.job_id),
                       (SELECT string_agg(t.command, '; ') FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status = 'running'),
                       (SELECT string_agg(t.message, '; ') FROM pg_dist_background_task t WHERE t.job_id = j.job_id AND t.status IN ('error', 'cancelled'))
                  FROM pg_dist_background_job j WHERE j.job_id = @job
                """, connection);
            command.Parameters.AddWithValue("job", job);
            string state;
            long done, total;
            string? running, failure;
            await using (var reader = await command.ExecuteReaderAsync(cancellationToken))
            {
                await reader.ReadAsync(cancellationToken);
                state = reader.GetString(0);
                done = reader.GetInt64(1);
                total = reader.GetInt64(2);
                running = reader.IsDBNull(3) ? null : reader.GetString(3);
                failure = reader.IsDBNull(4) ? null : reader.GetString(4);
            }

            progress?.Report(new RebalanceProgress(done, total, running));
            switch (state)
            {
                case "finished":
                    return total;
                case "failed" or "cancelled" or "failing" or "cancelling":
                    throw new RebalanceRefusedException(
                        $"Citus' rebalance job {job} is {state} after {done} of {total} moves: {failure ?? "no message"}; the moves done stay done, " +
                        "a rerun goes on from there");
            }

            await Task.Delay(PollEvery, clock, cancellationToken);
        }
    }
}
