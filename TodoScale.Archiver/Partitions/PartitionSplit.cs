using System.Diagnostics;
using System.Globalization;
using Npgsql;
using TodoScale.Data.Schema;
using Polly;
using TodoScale.Archiver.Database;
using TodoScale.Archiver.Settings;
using TodoScale.Data.Legacy;
using TodoScale.Data.Locking;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.Partitions;

/// <summary>The split refused to start or go on; nothing was changed by the refusal.</summary>
public sealed class SplitRefusedException(string message) : Exception(message);

/// <summary>One old partition's re-split, as partition_split records it.</summary>
public sealed record SplitState(
    string Table, int OldModulus, int Remainder, int NewModulus, SplitStep Step, long Copied, long Total,
    DateTimeOffset StartedAt, DateTimeOffset UpdatedAt, DateTimeOffset? FinishedAt)
{
    public string Partition => PartitionSplit.Name(Table, Remainder);
}

public readonly record struct SplitProgress(string Table, string Partition, SplitStep Step, long Copied, long Total, int Done, int Of);

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
public sealed partial class PartitionSplit(NpgsqlDataSource owner, NpgsqlDataSource archiver, SplitOptions options, TimeProvider clock)
{
    public static readonly IReadOnlyList<string> Tables = ["todos_active", "ai_interactions"];

    /// <summary>Advisory lock held by a running split (one at a time per database).</summary>
    public const long SplitLockKey = 0x5453504C; // "TSPL"

    public const string MirrorTrigger = "todoscale_split_mirror";
    private const string BoundCheck = "todoscale_split_bound";

    /// <summary>A copy batch that met a lock it would have waited for (BatchLockTimeout), a deadlock or a serialization failure runs again.</summary>
    private readonly ResiliencePipeline _batchRetry = TransientRetry.Create(options.LockAttempts, TimeSpan.FromMilliseconds(50), TimeSpan.FromSeconds(1), clock);

    public static string Name(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_p{remainder:00}");

    private static string NextName(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_next_p{remainder:00}");

    private static string OldName(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"{table}_old_p{remainder:00}");

    private static string MirrorFunction(string table, int remainder) => string.Create(CultureInfo.InvariantCulture, $"todoscale_split_{table}_p{remainder:00}");

    /// <summary>A column the copy's row locks are granted on (row locks need an UPDATE privilege on some column); no writer changes it.</summary>
    private static string LockColumn(string table) => table == "todos_active" ? "updated_at" : "created_at";

    /// <summary>The attached hash partitions of a table: (modulus, remainder) by name.</summary>
    public static async Task<SortedDictionary<string, (int Modulus, int Remainder)>> LayoutAsync(NpgsqlConnection connection, string table, CancellationToken cancellationToken) =>
        new((await PartitionsAsync(connection, table, cancellationToken)).ToDictionary(p => p.Name, p => ParseBound(p.Bound)), StringComparer.Ordinal);

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
                reader.GetString(0), reader.GetInt32(1), reader.GetInt32(2), reader.GetInt32(3), SplitSteps.Parse(reader.GetString(4)), reader.GetInt64(5), reader.GetInt64(6),
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

    /// <summary>The old partitions still to split to <paramref name="to"/> (<see cref="SplitPlan.Work"/>); refuses what cannot be done.</summary>
    private static async Task<List<SplitWork>> PlanAsync(NpgsqlConnection connection, int to, CancellationToken cancellationToken)
    {
        if (await CitusLayout.IsCitusAsync(connection, cancellationToken))
        {
            throw new SplitRefusedException(
                "this database is a Citus cluster: it grows by shards on more workers, not by more local partitions; add a worker " +
                "and move shards to it online with `partitions rebalance --add-worker host:port` (Citus' rebalancer; README, \"TodoScale on Citus\")");
        }

        if (await LegacyPhase.InProgressAsync(connection, cancellationToken) is { } phase)
        {
            throw new SplitRefusedException($"a legacy migration is in progress (phase {phase}); split after `legacy finalize`");
        }

        var layouts = new List<(string, IReadOnlyCollection<(int, int)>)>();
        foreach (var table in Tables)
        {
            layouts.Add((table, (await LayoutAsync(connection, table, cancellationToken)).Values));
        }

        return SplitPlan.Work(to, layouts, await StatesAsync(connection, cancellationToken));
    }

    private readonly record struct PartitionOutcome(long Copied, LockBoundResult? Swap);

    private async Task<PartitionOutcome> SplitPartitionAsync(
        string table, int oldModulus, int remainder, int to, int index, int of, IProgress<SplitProgress>? progress, CancellationToken cancellationToken)
    {
        var targets = SplitPlan.Targets(oldModulus, remainder, to);
        var state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        if (state is null)
        {
            await PrepareAsync(table, oldModulus, remainder, to, targets, cancellationToken);
            state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        }

        long copied = 0;
        LockBoundResult? swap = null;
        while (state!.Step != SplitStep.Done)
        {
            progress?.Report(new SplitProgress(table, Name(table, remainder), state.Step, state.Copied, state.Total, index, of));
            switch (state.Step)
            {
                case SplitStep.Copying:
                    copied += await CopyAsync(table, state, targets, progress, index, of, cancellationToken);
                    break;
                case SplitStep.Copied:
                    await AddForeignKeysAsync(table, remainder, targets, cancellationToken);

                    swap = await SwapAsync(table, oldModulus, remainder, to, targets, cancellationToken);
                    break;
                case SplitStep.Swapped:
                    await FinishAsync(table, oldModulus, remainder, targets, cancellationToken);
                    break;
            }

            state = await StateAsync(table, oldModulus, remainder, cancellationToken);
        }

        progress?.Report(new SplitProgress(table, Name(table, remainder), SplitStep.Done, state.Copied, state.Total, index + 1, of));
        return new PartitionOutcome(copied, swap);
    }

    private async Task<SplitState?> StateAsync(string table, int oldModulus, int remainder, CancellationToken cancellationToken)
    {
        await using var connection = await archiver.OpenConnectionAsync(cancellationToken);
        return (await StatesAsync(connection, cancellationToken)).FirstOrDefault(s => s.Table == table && s.OldModulus == oldModulus && s.Remainder == remainder);
    }

    private static async Task<List<string>> ColumnNamesAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string table, CancellationToken cancellationToken) =>
        [.. (await ColumnsAsync(connection, transaction, table, cancellationToken)).Select(c => c.Name)];
}
