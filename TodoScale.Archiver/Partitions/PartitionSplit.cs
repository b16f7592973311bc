using System.Diagnostics;
using System.Globalization;
using System.Numerics;
using System.Text;
using Npgsql;
using TodoScale.Archiver.Database;
using NpgsqlTypes;
using Polly;
using TodoScale.Data.Legacy;
using static TodoScale.Data.SqlText;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Locking;

namespace TodoScale.Archiver.Partitions;

/// <summary>The split refused to start or go on; nothing was changed by the refusal.</summary>
public sealed class SplitRefusedException(string message) : Exception(message);

/// <summary>One old partition's re-split, as partition_split records it.</summary>
public sealed record SplitState(
    string Table, int OldModulus, int Remainder, int NewModulus, string Step, long Copied, long Total,
    DateTimeOffset StartedAt, DateTimeOffset UpdatedAt, DateTimeOffset? FinishedAt)
{
    public string Partition => PartitionSplit.Name(Table, Remainder);
}

public readonly record struct SplitProgress(string Table, string Partition, string Step, long Copied, long Total, int Done, int Of);

public sealed record SplitResult(
    int Modulus, bool AlreadyDone, int PartitionsSplit, long RowsCopied, TimeSpan Elapsed, TimeSpan LongestSwap, int LongestSwapAttempts);

/// <summary>
/// The online re-split of the hash-partitioned tables (todos_active, ai_interactions) to a larger modulus, one old
/// partition at a time: old child r of modulus m becomes the children r, r + m, r + 2m .. of modulus N, which
/// PostgreSQL allows beside the other children of modulus m. Per old partition, each step resumable:
/// <list type="number">
/// <item>prepare (one transaction): the new children as plain tables named <c>&lt;table&gt;_next_pXX</c>, shaped
/// LIKE the old one (columns, defaults, CHECKs, indexes), each with a CHECK that its rows hash to it (so ATTACH will
/// not scan), row-level security and the parent's grants; a trigger on the old child, enabled ALWAYS (it fires
/// under the archiver's session_replication_role too), that repeats every insert, update and delete on the new
/// child the row hashes to, in the writer's transaction.</item>
/// <item>copy: keyset batches over the old child's primary key as the archiver role, rows locked FOR SHARE (a
/// concurrent update or delete waits for the batch, then reaches the copy through the trigger; a row deleted before
/// the batch is skipped, never resurrected), inserted ON CONFLICT DO NOTHING (the trigger's copy is newer); the
/// position is saved in the batch's own transaction.</item>
/// <item>constrain (todos_active): each new child's foreign keys, added NOT VALID under a short lock, then
/// VALIDATEd without blocking writes; ANALYZE.</item>
/// <item>swap (one transaction under lock_timeout, retried): DETACH the old child, rename, ATTACH the new ones (no
/// scan: their CHECK implies the bound; their indexes and foreign key are adopted), drop the CHECKs.</item>
/// <item>finish: drop the old child and its trigger function, give the new children's indexes their final names.</item>
/// </list>
/// </summary>
public sealed class PartitionSplit(NpgsqlDataSource owner, NpgsqlDataSource archiver, SplitOptions options, TimeProvider clock)
{
    public static readonly IReadOnlyList<string> Tables = ["todos_active", "ai_interactions"];

    /// <summary>Advisory lock held by a running split (one at a time per database).</summary>
    public const long SplitLockKey = 0x5453504C; // "TSPL"

    public const string MirrorTrigger = "todoscale_split_mirror";
    private const string BoundCheck = "todoscale_split_bound";
    private const int MaxModulus = 256;

    /// <summary>A copy batch that met a lock it would have waited for (BatchLockTimeout), a deadlock or a serialization failure runs again.</summary>
    private readonly ResiliencePipeline _batchRetry = TransientRetry.Create(options.LockAttempts, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1), clock);

    public static string Name(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_p{remainder:00}");

    private static string NextName(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_next_p{remainder:00}");

    private static string OldName(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_old_p{remainder:00}");

    private static string MirrorFunction(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"todoscale_split_{table}_p{remainder:00}");

    /// <summary>A column the copy's row locks are granted on (row locks need an UPDATE privilege on some column); no writer changes it.</summary>
    private static string LockColumn(string table) => table == "todos_active" ? "updated_at" : "created_at";

    /// <summary>The attached hash partitions of a table: (modulus, remainder) by name.</summary>
    public static async Task<SortedDictionary<string, (int Modulus, int Remainder)>> LayoutAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
              FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = @table::regclass
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        var layout = new SortedDictionary<string, (int, int)>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            layout[reader.GetString(0)] = ParseBound(reader.GetString(1));
        }

        return layout;
    }

    /// <summary>"FOR VALUES WITH (modulus 16, remainder 3)" -> (16, 3).</summary>
    public static (int Modulus, int Remainder) ParseBound(string bound)
    {
        var numbers = bound.Split([' ', ',', '(', ')'], StringSplitOptions.RemoveEmptyEntries);
        var modulus = Array.IndexOf(numbers, "modulus");
        var remainder = Array.IndexOf(numbers, "remainder");
        return modulus < 0 || remainder < 0
            ? throw new InvalidDataException($"not a hash partition bound: {bound}")
            : (int.Parse(numbers[modulus + 1], CultureInfo.InvariantCulture), int.Parse(numbers[remainder + 1], CultureInfo.InvariantCulture));
    }

    /// <summary>Every old partition's split recorded in partition_split, most recent split first.</summary>
    public async Task<List<SplitState>> StatesAsync(CancellationToken cancellationToken)
    {
        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        return await StatesAsync(connection, cancellationToken);
    }

    private static async Task<List<SplitState>> StatesAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT table_name, old_modulus, remainder, new_modulus, step, copied, total, started_at, updated_at, finished_at
              FROM partition_split ORDER BY new_modulus DESC, table_name DESC, remainder
            """, connection);
        var states = new List<SplitState>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            states.Add(new SplitState(
                reader.GetString(0), reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3), reader.GetString(4), reader.GetInt64(5), reader.GetInt64(6),
                reader.GetFieldValue<DateTimeOffset>(7), reader.GetFieldValue<DateTimeOffset>(8), reader.IsDBNull(9) ? null : reader.GetFieldValue<DateTimeOffset>(9)));
        }

        return states;
    }

    /// <summary>Splits both tables to <paramref name="to"/> partitions, or finishes the split to it that a kill interrupted.</summary>
    public async Task<SplitResult> SplitAsync(int to, string actor, IProgress<SplitProgress>? progress, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        await using var splitLock = await SessionLock.TryTakeAsync(owner, SplitLockKey, cancellationToken)
            ?? throw new SplitRefusedException("another `partitions split` is running on this database; wait for it (or stop it: a rerun resumes)");
        var guard = splitLock.Connection;

        var work = await PlanAsync(guard, to, cancellationToken);
        if (work.Count == 0)
        {
            return new SplitResult(to, AlreadyDone: true, 0, 0, Stopwatch.GetElapsedTime(started), TimeSpan.Zero, 0);
        }

        await AuditLog.WriteAsync(owner, "operator", actor, "partitions.split.run", null, new { To = to, Partitions = work.Count }, cancellationToken);
        long copied = 0;
        var longestSwap = TimeSpan.Zero;
        var longestAttempts = 0;
        for (var i = 0; i < work.Count; i++)
        {
            var (table, oldModulus, remainder) = work[i];
            var outcome = await SplitPartitionAsync(table, oldModulus, remainder, to, i, work.Count, progress, cancellationToken);
            copied += outcome.Copied;
            if (outcome.Swap is { } swap)
            {
                longestSwap = swap.LongestAttempt > longestSwap ? swap.LongestAttempt : longestSwap;
                longestAttempts = Math.Max(longestAttempts, swap.Attempts);
                await AuditLog.WriteAsync(owner, "operator", actor, "partitions.split.swap", Name(table, remainder),
                    new { To = to, SwapMs = Math.Round(swap.LongestAttempt.TotalMilliseconds, 1), swap.Attempts }, cancellationToken);
            }
        }

        var result = new SplitResult(to, AlreadyDone: false, work.Count, copied, Stopwatch.GetElapsedTime(started), longestSwap, longestAttempts);
        await AuditLog.WriteAsync(owner, "operator", actor, "partitions.split.done", null,
            new { To = to, result.PartitionsSplit, result.RowsCopied, ElapsedS = Math.Round(result.Elapsed.TotalSeconds, 1), LongestSwapMs = Math.Round(longestSwap.TotalMilliseconds, 1) },
            cancellationToken);
        return result;
    }

    /// <summary>The old partitions still to split to <paramref name="to"/>, in order; refuses what cannot be done.</summary>
    private static async Task<List<(string Table, int OldModulus, int Remainder)>> PlanAsync(NpgsqlConnection connection, int to, CancellationToken cancellationToken)
    {
        if (to is < 2 or > MaxModulus || !BitOperations.IsPow2(to))
        {
            throw new SplitRefusedException($"--to {to}: the new number of partitions must be a power of two from 2 to {MaxModulus} (32, 64...)");
        }

        await using (var legacy = new NpgsqlCommand("SELECT phase FROM legacy_migration WHERE phase <> @finalized", connection))
        {
            legacy.Parameters.Add(new NpgsqlParameter<string>("finalized", LegacyPhase.Finalized));
            if (await legacy.ExecuteScalarAsync(cancellationToken) is string phase)
            {
                throw new SplitRefusedException($"a legacy migration is in progress (phase {phase}); split after `legacy finalize`");
            }
        }

        var unfinished = (await StatesAsync(connection, cancellationToken)).Where(s => s.Step != "done").ToList();
        if (unfinished.Select(s => s.NewModulus).Distinct().FirstOrDefault(m => m != to) is var other and > 0)
        {
            throw new SplitRefusedException($"a split to {other} partitions is in progress ({unfinished.Count(s => s.NewModulus == other)} old partition(s) left); finish it first with `partitions split --to {other}`");
        }

        var work = new List<(string, int, int)>();
        foreach (var table in Tables)
        {
            var layout = await LayoutAsync(connection, table, cancellationToken);
            var moduli = layout.Values.Select(b => b.Modulus).Distinct().Order().ToList();
            var current = moduli.FirstOrDefault();
            var resuming = unfinished.Any(s => s.Table == table);
            if (moduli.Count == 0)
            {
                throw new SplitRefusedException($"{table} has no partitions: run `migrate` first");
            }

            if (moduli.Count > 1 && (moduli.Count > 2 || moduli[1] != to))
            {
                throw new SplitRefusedException($"{table} has partitions of moduli {string.Join(", ", moduli)}: a split to {moduli[^1]} is unfinished; finish it with `partitions split --to {moduli[^1]}`");
            }

            if (current == to && !resuming)
            {
                continue;
            }

            if (to < current || to % current != 0)
            {
                throw new SplitRefusedException(
                    $"--to {to}: {table} has {current} partitions, and {current} does not divide {to}; a split only multiplies them: --to {current * 2}, {current * 4}...");
            }

            // A partition swapped but not yet finished (its old table still to drop) is no longer in the layout: first.
            work.AddRange(unfinished.Where(s => s.Table == table && s.Step == "swapped").Select(s => (table, s.OldModulus, s.Remainder)));
            work.AddRange(layout.Values.Where(b => b.Modulus == current && current != to).OrderBy(b => b.Remainder).Select(b => (table, current, b.Remainder)));
        }

        return work;
    }

    private readonly record struct PartitionOutcome(long Copied, LockBoundResult? Swap);

    private async Task<PartitionOutcome> SplitPartitionAsync(
        string table, int oldModulus, int remainder, int to, int index, int of, IProgress<SplitProgress>? progress, CancellationToken cancellationToken)
    {
        var targets = Enumerable.Range(0, to / oldModulus).Select(k => remainder + k * oldModulus).ToArray();
        var state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        if (state is null)
        {
            await PrepareAsync(table, oldModulus, remainder, to, targets, cancellationToken);
            state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        }

        long copied = 0;
        LockBoundResult? swap = null;
        while (state!.Step != "done")
        {
            progress?.Report(new SplitProgress(table, Name(table, remainder), state.Step, state.Copied, state.Total, index, of));
            switch (state.Step)
            {
                case "copying":
                    copied += await CopyAsync(table, state, targets, progress, index, of, cancellationToken);
                    break;
                case "copied":
                    if (table == "todos_active")
                    {
                        await AddForeignKeysAsync(targets, cancellationToken);
                    }

                    swap = await SwapAsync(table, oldModulus, remainder, to, targets, cancellationToken);
                    break;
                case "swapped":
                    await FinishAsync(table, oldModulus, remainder, targets, cancellationToken);
                    break;
                default:
                    throw new InvalidDataException($"partition_split has step '{state.Step}' for {Name(table, remainder)}");
            }

            state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        }

        progress?.Report(new SplitProgress(table, Name(table, remainder), "done", state.Copied, state.Total, index + 1, of));
        return new PartitionOutcome(copied, swap);
    }

    private async Task<SplitState?> StateAsync(string table, int oldModulus, int remainder, CancellationToken cancellationToken)
    {
        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        return (await StatesAsync(connection, cancellationToken)).FirstOrDefault(s => s.Table == table && s.OldModulus == oldModulus && s.Remainder == remainder);
    }

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
            var columns = await ColumnsAsync(connection, transaction, old, cancellationToken);
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

    /// <summary>Step 2: keyset batches over the old child's primary key, each saving its position in its own transaction.</summary>
    private async Task<long> CopyAsync(string table, SplitState state, int[] targets, IProgress<SplitProgress>? progress, int index, int of, CancellationToken cancellationToken)
    {
        var old = Name(table, state.Remainder);
        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        var columns = await ColumnsAsync(connection, null, old, cancellationToken);
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
                    "UPDATE partition_split SET step = 'copied', updated_at = now() WHERE table_name = @table AND old_modulus = @old AND remainder = @remainder AND step = 'copying'",
                    connection);
                AddKey(done, state);
                await done.ExecuteNonQueryAsync(cancellationToken);
                return copied;
            }

            progress?.Report(new SplitProgress(table, old, "copying", total, Math.Max(state.Total, total), index, of));
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

    /// <summary>
    /// Step 3 (todos_active): each new child's subtask key (to itself) and project key, identical to the parent's so
    /// ATTACH adopts it without a scan. Added NOT VALID under a short lock, validated without blocking writes.
    /// </summary>
    private async Task AddForeignKeysAsync(int[] targets, CancellationToken cancellationToken)
    {
        const string table = "todos_active";
        foreach (var target in targets)
        {
            var next = Quote(NextName(table, target));
            var keys = new (string Name, string Definition)[]
            {
                ($"{Name(table, target)}_parent_fkey", $"FOREIGN KEY (user_id, parent_todo_id) REFERENCES {next} (user_id, id) ON DELETE CASCADE"),
                ("todos_active_project_fkey", "FOREIGN KEY (user_id, project_id) REFERENCES projects (user_id, id) ON DELETE SET NULL (project_id)"),
            };
            foreach (var (name, definition) in keys)
            {
                bool? validated;
                await using (var connection = await owner.OpenConnectionAsync(cancellationToken))
                await using (var command = new NpgsqlCommand(
                    "SELECT convalidated FROM pg_constraint WHERE conrelid = to_regclass(@table) AND conname = @name", connection))
                {
                    command.Parameters.Add(new NpgsqlParameter<string>("table", NextName(table, target)));
                    command.Parameters.Add(new NpgsqlParameter<string>("name", name));
                    validated = await command.ExecuteScalarAsync(cancellationToken) as bool?;
                }

                if (validated is null)
                {
                    await LockBoundStep.RunAsync(owner, options.LockTimeout, options.LockAttempts, clock, async (connection, transaction) =>
                    {
                        await using var add = new NpgsqlCommand($"ALTER TABLE {next} ADD CONSTRAINT {Quote(name)} {definition} NOT VALID", connection, transaction);
                        await add.ExecuteNonQueryAsync(cancellationToken);
                    }, cancellationToken);
                }

                if (validated is not true)
                {
                    await using var connection = await owner.OpenConnectionAsync(cancellationToken);
                    await using var validate = new NpgsqlCommand($"ALTER TABLE {next} VALIDATE CONSTRAINT {Quote(name)}", connection) { CommandTimeout = 0 };
                    await validate.ExecuteNonQueryAsync(cancellationToken);
                }
            }
        }
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
            $"UPDATE partition_split SET step = 'swapped', updated_at = now() WHERE table_name = {Literal(table)} AND old_modulus = {oldModulus} AND remainder = {remainder};");
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
                $"UPDATE partition_split SET step = 'done', updated_at = now(), finished_at = now() WHERE table_name = {Literal(table)} AND old_modulus = {oldModulus} AND remainder = {remainder};");
            await using var command = new NpgsqlCommand(sql.ToString(), connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }, cancellationToken);
    }

    private static async Task<List<string>> ColumnsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string table, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            "SELECT attname FROM pg_attribute WHERE attrelid = @table::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string>("table", table));
        var columns = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            columns.Add(reader.GetString(0));
        }

        return columns;
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection, transaction);
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    private static void AddKey(NpgsqlCommand command, SplitState state)
    {
        command.Parameters.Add(new NpgsqlParameter<string>("table", state.Table));
        command.Parameters.Add(new NpgsqlParameter<int>("old", state.OldModulus));
        command.Parameters.Add(new NpgsqlParameter<int>("remainder", state.Remainder));
    }
}
