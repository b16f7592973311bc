using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Archiver.Database;
using TodoScale.Data.Schema;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Archiving;

/// <summary>A partition's pass over todos: finished trees found in (completed_at, id) order and moved whole, one statement a batch.</summary>
public sealed partial class TodoArchiver
{
    private async Task<PartitionResult> ArchiveTreesAsync(
        NpgsqlConnection connection, string partition, int index, DateTimeOffset cutoff, DateTimeOffset archivedAt, bool skipRowTriggers,
        bool citus, IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        long rows = 0, roots = 0;
        var batches = 0;
        (DateTimeOffset CompletedAt, Guid Id) after = (DateTimeOffset.MinValue, Guid.Empty);
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var candidates = await NextRootsAsync(connection, partition, cutoff, after, cancellationToken);
            if (candidates.Count == 0)
            {
                break;
            }

            var started = Stopwatch.GetTimestamp();
            var (moved, movedRoots) = await MoveBatchAsync(connection, partition, candidates, cutoff, archivedAt, skipRowTriggers, citus, cancellationToken);
            rows += moved;
            roots += movedRoots;
            batches++;
            metrics?.BatchMoved("todos", index, moved, Stopwatch.GetElapsedTime(started));
            progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: false));
            after = (candidates[^1].CompletedAt, candidates[^1].Id);
            if (candidates.Count < options.BatchSize)
            {
                break;
            }

            if (options.PauseBetweenBatches > TimeSpan.Zero)
            {
                await Task.Delay(options.PauseBetweenBatches, clock, cancellationToken);
            }
        }

        progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: true));
        return new PartitionResult(partition, index, rows, roots, batches, Skipped: false);
    }

    /// <summary>The next top-level finished todos older than the cut-off, in (completed_at, id) order after the last batch.</summary>
    private async Task<List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)>> NextRootsAsync(
        NpgsqlConnection connection, string partition, DateTimeOffset cutoff, (DateTimeOffset CompletedAt, Guid Id) after,
        CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            $"""
            SELECT user_id, id, completed_at FROM {Quote(partition)}
             WHERE status IN ('done', 'cancelled') AND completed_at < @cutoff AND parent_todo_id IS NULL
               AND (completed_at, id) > (@after_completed, @after_id)
             ORDER BY completed_at, id
             LIMIT @batch
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("after_completed", NpgsqlDbType.TimestampTz) { TypedValue = after.CompletedAt == DateTimeOffset.MinValue ? DateTimeOffset.UnixEpoch.AddYears(-100) : after.CompletedAt });
        command.Parameters.Add(new NpgsqlParameter<Guid>("after_id", NpgsqlDbType.Uuid) { TypedValue = after.Id });
        command.Parameters.Add(new NpgsqlParameter<int>("batch", NpgsqlDbType.Integer) { TypedValue = options.BatchSize });
        var roots = new List<(Guid, Guid, DateTimeOffset)>(options.BatchSize);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            roots.Add((reader.GetGuid(0), reader.GetGuid(1), reader.GetFieldValue<DateTimeOffset>(2)));
        }

        return roots;
    }

    /// <summary>
    /// The batch: one statement that finds each candidate's subtree, keeps the trees in which every todo qualifies,
    /// deletes exactly those rows (re-checking status, completed_at and parent on the row version it deletes) and
    /// inserts what the delete returned. Retried whole on a serialization failure (a concurrent change reached a
    /// moving tree), and when the delete moved fewer rows than the trees held when read: a todo changed in between
    /// (a root reopened while its subtasks still qualify), and moving the rest would split its tree.
    /// <para>
    /// A subtask committed under a moving todo after the statement's snapshot is what could be lost. With
    /// <paramref name="skipRowTriggers"/> the transaction runs with session_replication_role = replica, so the
    /// parent foreign key's per-row ON DELETE CASCADE trigger (most of a batch's time, and with nothing to do: the
    /// statement deletes every subtask it moves) does not run, and a second statement in the same transaction,
    /// with a new snapshot, looks for any todo left whose parent was just moved: one found rolls the batch back and
    /// it is retried. A writer that inserted such a subtask held a key-share lock on its parent, so the delete
    /// waited for it to commit and the check sees it; a writer that comes after the delete waits on the deleted
    /// row and then fails its own foreign key check. Without it, the triggers run and todos_active_archive_guard
    /// turns such a cascade into a serialization failure.
    /// </para>
    /// <para>
    /// On Citus (<paramref name="citus"/>) the batch runs per shard of its roots' users, each shard's statements
    /// routed whole to the worker that holds it: Citus plans a recursive CTE only when every table in it is filtered
    /// on the distribution column and pruned to one shard, and not beside an INSERT fed by a DELETE, so the walk
    /// (<see cref="CitusWalk"/>) and the move (<see cref="CitusMove"/>, re-checking each row as the one statement
    /// does) are two statements per shard, in the batch's one transaction. Citus commits it on every worker it
    /// touched with two-phase commit: the batch is atomic across workers. A subtask added between the two statements
    /// is what the guard and the orphan check already catch between the one statement's snapshot and its delete.
    /// </para>
    /// </summary>
    private async Task<(long Rows, long Roots)> MoveBatchAsync(
        NpgsqlConnection connection, string partition, List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)> roots,
        DateTimeOffset cutoff, DateTimeOffset archivedAt, bool skipRowTriggers, bool citus, CancellationToken cancellationToken)
    {
        var table = Quote(partition);
        var sql =
            $"""
            WITH RECURSIVE roots AS (
                SELECT * FROM unnest(@user_ids, @ids) AS r(user_id, id)
            ), tree AS (
                SELECT t.user_id, t.id, t.parent_todo_id, t.id AS root_id,
                       (t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff) AS qualifies
                  FROM {table} t JOIN roots r ON t.user_id = r.user_id AND t.id = r.id
                 WHERE t.parent_todo_id IS NULL
                UNION ALL
                SELECT c.user_id, c.id, c.parent_todo_id, tree.root_id,
                       (c.status IN ('done', 'cancelled') AND c.completed_at < @cutoff)
                  FROM {table} c JOIN tree ON c.user_id = tree.user_id AND c.parent_todo_id = tree.id
            ), movable AS (
                SELECT user_id, id, parent_todo_id, root_id FROM tree
                 WHERE root_id NOT IN (SELECT root_id FROM tree WHERE qualifies IS NOT TRUE)
            ), moved AS (
                DELETE FROM {table} t USING movable m
                 WHERE t.user_id = m.user_id AND t.id = m.id
                   AND t.parent_todo_id IS NOT DISTINCT FROM m.parent_todo_id
                   AND t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff
                RETURNING {TodoColumns.Qualified(Columns, "t")}
            ), archived AS (
                INSERT INTO todos_archived ({Columns}, archived_at)
                SELECT {Columns}, @archived_at FROM moved
                RETURNING user_id, id, parent_todo_id
            )
            SELECT count(*), count(*) FILTER (WHERE parent_todo_id IS NULL), array_agg(user_id), array_agg(id), (SELECT count(*) FROM movable)
              FROM archived
            """;
        var orphans =
            $"""
            SELECT c.id FROM unnest(@user_ids, @ids) AS m(user_id, id)
              JOIN {table} c ON c.user_id = m.user_id AND c.parent_todo_id = m.id
             LIMIT 1
            """;
        var settings = skipRowTriggers
            ? "SET LOCAL todoscale.archiving = 'on'; SET LOCAL session_replication_role = replica"
            : "SET LOCAL todoscale.archiving = 'on'";
        return await _batchRetry.ExecuteAsync(async token =>
        {
            await using var transaction = await connection.BeginTransactionAsync(token);
            await using (var guard = new NpgsqlCommand(settings, connection, transaction))
            {
                await guard.ExecuteNonQueryAsync(token);
            }

            var (rows, movedRoots, movedUsers, movedIds, found) = citus
                ? await MovePerShardAsync(connection, transaction, table, roots, cutoff, archivedAt, token)
                : await MoveAsync(connection, transaction, sql, roots, cutoff, archivedAt, token);
            if (rows != found)
            {
                throw new TreeChangedWhileMovingException(found - rows);
            }

            if (skipRowTriggers && rows > 0)
            {
                await using var check = new NpgsqlCommand(orphans, connection, transaction);
                check.Parameters.Add(new NpgsqlParameter<Guid[]>("user_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = movedUsers });
                check.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = movedIds });
                if (await check.ExecuteScalarAsync(token) is Guid orphan)
                {
                    throw new SubtaskAddedWhileMovingException(orphan);
                }
            }

            await transaction.CommitAsync(token);
            return (rows, movedRoots);
        }, cancellationToken);
    }

    private static async Task<(long Rows, long Roots, Guid[] Users, Guid[] Ids, long Found)> MoveAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string sql, List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)> roots,
        DateTimeOffset cutoff, DateTimeOffset archivedAt, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("user_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = roots.Select(r => r.UserId).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = roots.Select(r => r.Id).ToArray() });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
        command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("archived_at", NpgsqlDbType.TimestampTz) { TypedValue = archivedAt });
        return await ReadMovedAsync(command, cancellationToken);
    }

    /// <summary>What a move statement archived, and how many rows its trees held when it read them (Found).</summary>
    private static async Task<(long Rows, long Roots, Guid[] Users, Guid[] Ids, long Found)> ReadMovedAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        var rows = reader.GetInt64(0);
        var found = Convert.ToInt64(reader.GetValue(4), System.Globalization.CultureInfo.InvariantCulture);
        return rows == 0
            ? (0, 0, [], [], found)
            : (rows, reader.GetInt64(1), reader.GetFieldValue<Guid[]>(2), reader.GetFieldValue<Guid[]>(3), found);
    }

    /// <summary>
    /// The movable trees under the given roots of users who all live in one shard (every row of the tree qualifies),
    /// on Citus: every table filtered on the distribution column and pruned to that one shard, so Citus sends the
    /// whole recursive statement to the worker that holds it.
    /// </summary>
    private static string CitusWalk(string table) =>
        $"""
        WITH RECURSIVE tree AS (
            SELECT t.user_id, t.id, t.parent_todo_id, t.id AS root_id,
                   (t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff) AS qualifies
              FROM {table} t JOIN unnest(@root_users, @root_ids) AS r(user_id, id) ON t.user_id = r.user_id AND t.id = r.id
             WHERE t.user_id = ANY (@users) AND t.parent_todo_id IS NULL
            UNION ALL
            SELECT c.user_id, c.id, c.parent_todo_id, tree.root_id, (c.status IN ('done', 'cancelled') AND c.completed_at < @cutoff)
              FROM {table} c JOIN tree ON c.user_id = tree.user_id AND c.parent_todo_id = tree.id
             WHERE c.user_id = ANY (@users)
        )
        SELECT coalesce(array_agg(user_id), ARRAY[]::uuid[]), coalesce(array_agg(id), ARRAY[]::uuid[]), coalesce(array_agg(parent_todo_id), ARRAY[]::uuid[])
          FROM tree
         WHERE root_id NOT IN (SELECT root_id FROM tree WHERE qualifies IS NOT TRUE)
        """;

    /// <summary>The move of the rows <see cref="CitusWalk"/> found, each re-checked as the one statement does, on Citus (one shard's users).</summary>
    private static string CitusMove(string table) =>
        $"""
        WITH m AS (
            SELECT * FROM unnest(@row_users, @ids, @parents) AS m(user_id, id, parent_todo_id)
        ), moved AS (
            DELETE FROM {table} t USING m
             WHERE t.user_id = ANY (@users) AND t.user_id = m.user_id AND t.id = m.id AND t.parent_todo_id IS NOT DISTINCT FROM m.parent_todo_id
               AND t.status IN ('done', 'cancelled') AND t.completed_at < @cutoff
            RETURNING {TodoColumns.Qualified(Columns, "t")}
        ), archived AS (
            INSERT INTO todos_archived ({Columns}, archived_at)
            SELECT {Columns}, @archived_at FROM moved
            RETURNING user_id, id, parent_todo_id
        )
        SELECT count(*), count(*) FILTER (WHERE parent_todo_id IS NULL), array_agg(user_id), array_agg(id), cardinality(@ids::uuid[])
          FROM archived
        """;

    /// <summary>
    /// A batch on Citus: its roots grouped by the shard their user lives in (Citus' own function, one query), then
    /// per shard a walk and a move, each one statement routed to that shard's worker: a batch is at most two
    /// statements per shard, however many users it holds.
    /// </summary>
    private static async Task<(long Rows, long Roots, Guid[] Users, Guid[] Ids, long Found)> MovePerShardAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, string table, List<(Guid UserId, Guid Id, DateTimeOffset CompletedAt)> roots,
        DateTimeOffset cutoff, DateTimeOffset archivedAt, CancellationToken cancellationToken)
    {
        var shardOf = new Dictionary<Guid, long>();
        await using (var shards = new NpgsqlCommand("SELECT u, get_shard_id_for_distribution_column(@table::regclass, u) FROM unnest(@users) u", connection, transaction))
        {
            shards.Parameters.Add(new NpgsqlParameter<string>("table", table));
            shards.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. roots.Select(r => r.UserId).Distinct()] });
            await using var reader = await shards.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                shardOf[reader.GetGuid(0)] = reader.GetInt64(1);
            }
        }

        long rows = 0, movedRoots = 0, found = 0;
        List<Guid> users = [], ids = [];
        foreach (var shard in roots.GroupBy(r => shardOf[r.UserId]))
        {
            var shardUsers = shard.Select(r => r.UserId).Distinct().ToArray();
            Guid[] treeUsers, treeIds;
            Guid?[] treeParents;
            await using (var walk = new NpgsqlCommand(CitusWalk(table), connection, transaction))
            {
                walk.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = shardUsers });
                walk.Parameters.Add(new NpgsqlParameter<Guid[]>("root_users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. shard.Select(r => r.UserId)] });
                walk.Parameters.Add(new NpgsqlParameter<Guid[]>("root_ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = [.. shard.Select(r => r.Id)] });
                walk.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
                await using var reader = await walk.ExecuteReaderAsync(cancellationToken);
                await reader.ReadAsync(cancellationToken);
                treeUsers = reader.GetFieldValue<Guid[]>(0);
                treeIds = reader.GetFieldValue<Guid[]>(1);
                treeParents = reader.GetFieldValue<Guid?[]>(2);
            }

            if (treeIds.Length == 0)
            {
                continue;
            }

            await using var move = new NpgsqlCommand(CitusMove(table), connection, transaction);
            move.Parameters.Add(new NpgsqlParameter<Guid[]>("users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = shardUsers });
            move.Parameters.Add(new NpgsqlParameter<Guid[]>("row_users", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = treeUsers });
            move.Parameters.Add(new NpgsqlParameter<Guid[]>("ids", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { TypedValue = treeIds });
            move.Parameters.Add(new NpgsqlParameter("parents", NpgsqlDbType.Array | NpgsqlDbType.Uuid) { Value = treeParents.Select(p => p is { } g ? (object)g : DBNull.Value).ToArray() });
            move.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
            move.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("archived_at", NpgsqlDbType.TimestampTz) { TypedValue = archivedAt });
            var moved = await ReadMovedAsync(move, cancellationToken);
            rows += moved.Rows;
            movedRoots += moved.Roots;
            found += moved.Found;
            users.AddRange(moved.Users);
            ids.AddRange(moved.Ids);
        }

        return (rows, movedRoots, [.. users], [.. ids], found);
    }

    private const string AiColumns = TodoColumns.AiInteraction;
}

/// <summary>
/// A todo of a tree the batch read changed before the batch's delete reached it (reopened, edited or moved), so the
/// delete's re-check left it: moving the rest would split its tree (a subtask archived under a root that stays
/// active). The batch rolls back and is retried, and reads the trees again.
/// </summary>
public sealed class TreeChangedWhileMovingException(long rows)
    : TransientConflictException($"{rows} todo(s) of the batch's trees changed after the batch read them; the batch is retried");

/// <summary>A subtask was committed under a todo the batch moved, after the batch's snapshot: the batch rolls back and is retried.</summary>
public sealed class SubtaskAddedWhileMovingException(Guid subtask)
    : TransientConflictException($"todo {subtask} was added under a todo the batch moved, after the batch's snapshot; the batch is retried");
