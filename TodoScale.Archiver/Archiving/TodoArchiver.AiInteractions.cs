using System.Diagnostics;
using Npgsql;
using NpgsqlTypes;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Schema;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Archiving;

/// <summary>The pass over AI interactions: rows past AiOlderThan moved to their archive month.</summary>
public sealed partial class TodoArchiver
{
    /// <summary>
    /// Moves AI interactions older than <see cref="ArchiveOptions.AiOlderThan"/> to ai_interactions_archived, per
    /// partition in parallel under the same kind of advisory lock, each batch one DELETE .. RETURNING -> INSERT.
    /// </summary>
    public Task<ArchivePassResult> RunAiPassAsync(IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var now = clock.GetUtcNow();
        var cutoff = now - options.AiOlderThan;
        return RunOverPartitionsAsync("ai_interactions", "ai_interactions_archived", "ai_interactions", now, cutoff, (connection, partition) =>
            ArchiveAiPartitionAsync(connection, partition.Name, partition.Index, cutoff, now, progress, cancellationToken), cancellationToken);
    }

    private async Task<PartitionResult> ArchiveAiPartitionAsync(
        NpgsqlConnection connection, string partition, int index, DateTimeOffset cutoff, DateTimeOffset archivedAt,
        IProgress<ArchiveProgress>? progress, CancellationToken cancellationToken)
    {
        var table = Quote(partition);
        var sql =
            $"""
            WITH batch AS (
                SELECT user_id, id FROM {table} WHERE created_at < @cutoff ORDER BY created_at LIMIT @batch
            ), moved AS (
                DELETE FROM {table} a USING batch b
                 WHERE a.user_id = b.user_id AND a.id = b.id AND a.created_at < @cutoff
                RETURNING {TodoColumns.Qualified(AiColumns, "a")}
            ), archived AS (
                INSERT INTO ai_interactions_archived ({AiColumns}, archived_at)
                SELECT {AiColumns}, @archived_at FROM moved
                RETURNING 1
            )
            SELECT count(*) FROM archived
            """;
        long rows = 0;
        var batches = 0;
        while (true)
        {
            var started = Stopwatch.GetTimestamp();
            await using var command = new NpgsqlCommand(sql, connection);
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("cutoff", NpgsqlDbType.TimestampTz) { TypedValue = cutoff });
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("archived_at", NpgsqlDbType.TimestampTz) { TypedValue = archivedAt });
            command.Parameters.Add(new NpgsqlParameter<int>("batch", NpgsqlDbType.Integer) { TypedValue = options.BatchSize });
            var moved = (long)(await command.ExecuteScalarAsync(cancellationToken))!;
            if (moved == 0)
            {
                break;
            }

            rows += moved;
            batches++;
            metrics?.BatchMoved("ai_interactions", index, moved, Stopwatch.GetElapsedTime(started));
            progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: false));
            if (moved < options.BatchSize)
            {
                break;
            }

            if (options.PauseBetweenBatches > TimeSpan.Zero)
            {
                await Task.Delay(options.PauseBetweenBatches, clock, cancellationToken);
            }
        }

        progress?.Report(new ArchiveProgress(partition, rows, batches, Finished: true));
        return new PartitionResult(partition, index, rows, rows, batches, Skipped: false);
    }
}
