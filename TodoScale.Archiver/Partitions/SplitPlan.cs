using System.Numerics;

namespace TodoScale.Archiver.Partitions;

/// <summary>One old partition to split: old child <see cref="Remainder"/> of modulus <see cref="OldModulus"/>.</summary>
public readonly record struct SplitWork(string Table, int OldModulus, int Remainder);

/// <summary>
/// What a `partitions split --to N` has to do, decided from the catalog's layout and partition_split's rows alone
/// (no database here, so every rule is reachable by a unit test): which old partitions, in which order, or why not.
/// </summary>
public static class SplitPlan
{
    public const int MaxModulus = 256;

    /// <summary>The new children of old child <paramref name="remainder"/> of modulus <paramref name="oldModulus"/>: r, r + m, r + 2m .. below <paramref name="to"/>.</summary>
    public static int[] Targets(int oldModulus, int remainder, int to) =>
        [.. Enumerable.Range(0, to / oldModulus).Select(k => remainder + k * oldModulus)];

    /// <summary>
    /// The old partitions still to split to <paramref name="to"/>, in order (per table, a partition swapped but not
    /// yet finished first, then the remaining old children by remainder); throws <see cref="SplitRefusedException"/>
    /// for what cannot be done. <paramref name="layouts"/>: each table's attached partitions as (modulus, remainder).
    /// </summary>
    public static List<SplitWork> Work(
        int to, IReadOnlyList<(string Table, IReadOnlyCollection<(int Modulus, int Remainder)> Layout)> layouts, IReadOnlyList<SplitState> states)
    {
        if (to is < 2 or > MaxModulus || !BitOperations.IsPow2(to))
        {
            throw new SplitRefusedException($"--to {to}: the new number of partitions must be a power of two from 2 to {MaxModulus} (32, 64...)");
        }

        var unfinished = states.Where(s => s.Step != SplitStep.Done).ToList();
        if (unfinished.Select(s => s.NewModulus).Distinct().FirstOrDefault(m => m != to) is var other and > 0)
        {
            throw new SplitRefusedException($"a split to {other} partitions is in progress ({unfinished.Count(s => s.NewModulus == other)} old partition(s) left); finish it first with `partitions split --to {other}`");
        }

        var work = new List<SplitWork>();
        foreach (var (table, layout) in layouts)
        {
            var moduli = layout.Select(b => b.Modulus).Distinct().Order().ToList();
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
            work.AddRange(unfinished.Where(s => s.Table == table && s.Step == SplitStep.Swapped).Select(s => new SplitWork(table, s.OldModulus, s.Remainder)));
            work.AddRange(layout.Where(b => b.Modulus == current && current != to).OrderBy(b => b.Remainder).Select(b => new SplitWork(table, current, b.Remainder)));
        }

        return work;
    }
}
