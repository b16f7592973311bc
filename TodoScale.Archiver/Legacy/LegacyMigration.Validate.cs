using System.Diagnostics;
using Npgsql;
using TodoScale.Archiver.Database;
using TodoScale.Data.Legacy;

namespace TodoScale.Archiver.Legacy;

/// <summary>`legacy validate`: both sides compared per user bucket, then row by row where they differ.</summary>
public sealed partial class LegacyMigration
{
    /// <summary>
    /// `legacy validate`: in one snapshot (REPEATABLE READ, so writes made meanwhile are either on both sides or on
    /// neither), counts and checksums every user bucket of `todos` and of todos_active + todos_archived, then
    /// compares the mismatching buckets row by row. With <paramref name="samplePercent"/> only that share of the
    /// buckets is compared. A full validation without a mismatch moves the phase to validated (the gate of
    /// `switch`); one with a mismatch moves a validated migration back.
    /// </summary>
    public async Task<LegacyValidation> ValidateAsync(string actor, int? samplePercent, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await RequireLegacyTableAsync(cancellationToken);
        var state = await StateAsync(cancellationToken);
        if (state is null || state.Phase == LegacyPhase.Started)
        {
            throw new LegacyOrderException(state is null
                ? "run `legacy start` and `legacy backfill` first: there is nothing to compare yet"
                : "run `legacy backfill` to the end first: before it, every row not yet copied would be a mismatch");
        }

        if (state.Phase == LegacyPhase.Finalized)
        {
            throw new LegacyOrderException("the migration is finalized: `todos` is gone");
        }

        var buckets = options.ValidateBuckets;
        var checkedBuckets = samplePercent is { } percent ? Math.Max(1, buckets * percent / 100) : buckets;
        var bucketFilter = samplePercent is null ? "" : $"WHERE abs(hashtext(user_id::text)) % {buckets} < {checkedBuckets}";
        var row = RowChecksum.RowHash(ComparedColumns);
        var legacySide = $"SELECT {TakenTemplate.Replace("{started}", "@started").Replace("{depth}", "0")} FROM todos r";
        var newSide = $"SELECT {ComparedColumns} FROM todos_active UNION ALL SELECT {ComparedColumns} FROM todos_archived";

        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, cancellationToken);
        var legacy = await BucketsAsync(connection, transaction, legacySide, cancellationToken);
        var todoscale = await BucketsAsync(connection, transaction, newSide, cancellationToken);
        // A row in legacy_rejects is a mismatch even where TodoScale holds an equal copy (taken before a later write
        // broke its chain: the legacy row is what switch would serve): its bucket is compared row by row too.
        var rejected = await RejectBucketsAsync(connection, transaction, cancellationToken);
        var differing = legacy.Keys.Union(todoscale.Keys)
            .Where(b => !legacy.TryGetValue(b, out var l) || !todoscale.TryGetValue(b, out var t) || l != t)
            .Union(rejected)
            .ToArray();

        var mismatches = new List<Mismatch>();
        if (differing.Length > 0)
        {
            await using var rows = new NpgsqlCommand(
                $"""
                WITH l AS (
                    SELECT user_id, id, {row} AS h FROM ({legacySide}) s WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets)
                ), n AS (
                    SELECT user_id, id, min({row}) AS h, count(*) AS copies FROM ({newSide}) s
                     WHERE abs(hashtext(user_id::text)) % {buckets} = ANY(@buckets) GROUP BY user_id, id
                )
                SELECT coalesce(l.user_id, n.user_id), coalesce(l.id, n.id),
                       CASE WHEN n.id IS NULL THEN 'missing in TodoScale'
                            WHEN l.id IS NULL THEN '{Mismatch.OnlyInTodoScale}'
                            WHEN n.copies > 1 THEN 'in TodoScale twice'
                            WHEN l.h = n.h THEN 'equal in TodoScale, rejected since'
                            ELSE 'content differs' END,
                       r.reason, r.message
                  FROM l FULL JOIN n ON l.id = n.id AND l.user_id = n.user_id
                  LEFT JOIN legacy_rejects r ON r.user_id = coalesce(l.user_id, n.user_id) AND r.id = coalesce(l.id, n.id)
                 WHERE l.h IS DISTINCT FROM n.h OR n.copies > 1 OR (r.id IS NOT NULL AND l.id IS NOT NULL)
                 ORDER BY 1, 2
                """, connection, transaction);
            rows.Parameters.Add(new NpgsqlParameter<int[]>("buckets", differing));
            rows.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("started", state.StartedAt));
            rows.CommandTimeout = 0;
            await using var reader = await rows.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                mismatches.Add(new Mismatch(reader.GetGuid(0), reader.GetGuid(1), reader.GetString(2),
                    reader.IsDBNull(3) ? null : reader.GetString(3), reader.IsDBNull(4) ? null : reader.GetString(4)));
            }
        }

        await transaction.CommitAsync(cancellationToken);
        var result = new LegacyValidation(buckets, checkedBuckets, legacy.Values.Sum(v => v.Count), todoscale.Values.Sum(v => v.Count),
            mismatches, Stopwatch.GetElapsedTime(started), samplePercent is not null);

        if (samplePercent is null)
        {
            var sql = mismatches.Count == 0
                ? $"UPDATE legacy_migration SET phase = '{LegacyPhase.Validated}', validated_at = now(), updated_at = now() WHERE phase = '{LegacyPhase.Backfilled}'"
                : $"UPDATE legacy_migration SET phase = '{LegacyPhase.Backfilled}', validated_at = NULL, updated_at = now() WHERE phase = '{LegacyPhase.Validated}'";
            await using var phase = owner.CreateCommand(sql);
            await phase.ExecuteNonQueryAsync(cancellationToken);
        }

        await AuditLog.WriteAsync(owner, "operator", actor, "legacy.validate", LegacySchema.Table, new
        {
            Sample = samplePercent, result.BucketsChecked, result.LegacyRows, result.TodoScaleRows, Mismatches = mismatches.Count,
            FirstMismatches = mismatches.Take(20).Select(m => $"{m.Id} {m.Kind}"), ElapsedMs = (long)result.Elapsed.TotalMilliseconds,
        }, cancellationToken);
        return result;

        async Task<List<int>> RejectBucketsAsync(NpgsqlConnection c, NpgsqlTransaction t, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                $"SELECT DISTINCT bucket FROM (SELECT abs(hashtext(user_id::text)) % {buckets} AS bucket, user_id FROM legacy_rejects) r {bucketFilter}", c, t);
            var result = new List<int>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                result.Add(reader.GetInt32(0));
            }

            return result;
        }

        async Task<Dictionary<int, (long Count, string Checksum)>> BucketsAsync(NpgsqlConnection c, NpgsqlTransaction t, string source, CancellationToken ct)
        {
            await using var command = new NpgsqlCommand(
                $"""
                SELECT bucket, count(*), {RowChecksum.Aggregate("h")}
                  FROM (SELECT abs(hashtext(user_id::text)) % {buckets} AS bucket, {row} AS h FROM ({source}) s {bucketFilter}) b
                 GROUP BY 1
                """, c, t);
            command.Parameters.Add(new NpgsqlParameter<DateTimeOffset>("started", state.StartedAt));
            command.CommandTimeout = 0;
            var result = new Dictionary<int, (long, string)>();
            await using var reader = await command.ExecuteReaderAsync(ct);
            while (await reader.ReadAsync(ct))
            {
                result[reader.GetInt32(0)] = (reader.GetInt64(1), reader.GetString(2));
            }

            return result;
        }
    }
}
