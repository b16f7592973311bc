using System.Globalization;
using System.Text;
using Npgsql;
using NpgsqlTypes;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Partitions;

/// <summary>Step 2 of a partition's split: the copy, in keyset batches that save their position.</summary>
public sealed partial class PartitionSplit
{
    /// <summary>Step 2: keyset batches over the old child's primary key, each saving its position in its own transaction.</summary>
    private async Task<long> CopyAsync(string table, SplitState state, int[] targets, IProgress<SplitProgress>? progress, int index, int of, CancellationToken cancellationToken)
    {
        var old = Name(table, state.Remainder);
        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        var columns = await ColumnNamesAsync(connection, null, old, cancellationToken);
        var parentOid = await ScalarAsync<uint>(connection, null, $"SELECT {Literal(table)}::regclass::oid", cancellationToken);
        var statement = CopyBatchSql(table, state, targets, parentOid, columns);
        long copied = 0;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var (read, inserted, total) = await CopyBatchAsync(connection, statement, table, state, cancellationToken);
            copied += inserted;
            if (read == 0)
            {
                await using var done = new NpgsqlCommand(
                    $"UPDATE partition_split SET step = {Literal(SplitStep.Copied.Text())}, updated_at = now() WHERE table_name = @table AND old_modulus = @old AND remainder = @remainder AND step = {Literal(SplitStep.Copying.Text())}",
                    connection);
                AddKey(done, state);
                await done.ExecuteNonQueryAsync(cancellationToken);
                return copied;
            }

            progress?.Report(new SplitProgress(table, old, SplitStep.Copying, total, Math.Max(state.Total, total), index, of));
            if (options.PauseBetweenBatches > TimeSpan.Zero)
            {
                await Task.Delay(options.PauseBetweenBatches, clock, cancellationToken);
            }
        }
    }

    private string CopyBatchSql(string table, SplitState state, int[] targets, uint parentOid, IReadOnlyList<string> columns)
    {
        var list = string.Join(", ", columns.Select(Quote));
        var inserts = new StringBuilder();
        for (var i = 0; i < targets.Length; i++)
        {
            var condition = string.Create(CultureInfo.InvariantCulture, $"satisfies_hash_partition({parentOid}::oid, {state.NewModulus}, {targets[i]}, user_id)");
            inserts.Append(CultureInfo.InvariantCulture,
                $"""
                , copy_{i} AS (
                    INSERT INTO {Quote(NextName(table, targets[i]))} ({list})
                    SELECT {list} FROM batch WHERE {condition}
                    ON CONFLICT (user_id, id) DO NOTHING RETURNING 1)

                """);
        }

        var copiedCount = string.Join(" + ", targets.Select((_, i) => $"(SELECT count(*) FROM copy_{i})"));
        return $"""
            WITH batch AS (
                SELECT {list} FROM {Quote(Name(table, state.Remainder))}
                 WHERE (@after_user::uuid IS NULL OR (user_id, id) > (@after_user, @after_id))
                 ORDER BY user_id, id LIMIT @batch_size FOR SHARE)
            {inserts}, last AS (SELECT user_id, id FROM batch ORDER BY user_id DESC, id DESC LIMIT 1)
            , saved AS (
                UPDATE partition_split s
                   SET after_user_id = last.user_id, after_id = last.id, copied = s.copied + (SELECT count(*) FROM batch), updated_at = now()
                  FROM last
                 WHERE s.table_name = @table AND s.old_modulus = @old AND s.remainder = @remainder
                RETURNING s.copied)
            SELECT (SELECT count(*) FROM batch), {copiedCount}, coalesce((SELECT copied FROM saved), 0)
            """;
    }

    private async Task<(long Read, long Inserted, long Total)> CopyBatchAsync(
        NpgsqlConnection connection, string statement, string table, SplitState state, CancellationToken cancellationToken)
    {
        return await _batchRetry.ExecuteAsync(async token =>
        {
            await using var transaction = await connection.BeginTransactionAsync(token);
            await using (var setup = new NpgsqlCommand(
                $"SET LOCAL lock_timeout = '{(int)options.BatchLockTimeout.TotalMilliseconds}ms'; SET LOCAL jit = off", connection, transaction))
            {
                await setup.ExecuteNonQueryAsync(token);
            }

            (Guid? User, Guid? Id) after;
            await using (var position = new NpgsqlCommand(
                "SELECT after_user_id, after_id FROM partition_split WHERE table_name = @table AND old_modulus = @old AND remainder = @remainder FOR UPDATE",
                connection, transaction))
            {
                AddKey(position, state);
                await using var reader = await position.ExecuteReaderAsync(token);
                await reader.ReadAsync(token);
                after = (reader.IsDBNull(0) ? null : reader.GetGuid(0), reader.IsDBNull(1) ? null : reader.GetGuid(1));
            }

            await using var command = new NpgsqlCommand(statement, connection, transaction);
            AddKey(command, state);
            command.Parameters.Add(new NpgsqlParameter<Guid?>("after_user", NpgsqlDbType.Uuid) { TypedValue = after.User });
            command.Parameters.Add(new NpgsqlParameter<Guid?>("after_id", NpgsqlDbType.Uuid) { TypedValue = after.Id });
            command.Parameters.Add(new NpgsqlParameter<int>("batch_size", options.BatchSize));
            (long, long, long) result;
            await using (var reader = await command.ExecuteReaderAsync(token))
            {
                await reader.ReadAsync(token);
                result = (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
            }

            await transaction.CommitAsync(token);
            return result;
        }, cancellationToken);
    }

    private static void AddKey(NpgsqlCommand command, SplitState state)
    {
        command.Parameters.Add(new NpgsqlParameter<string>("table", state.Table));
        command.Parameters.Add(new NpgsqlParameter<int>("old", state.OldModulus));
        command.Parameters.Add(new NpgsqlParameter<int>("remainder", state.Remainder));
    }
}
