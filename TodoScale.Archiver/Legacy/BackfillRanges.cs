namespace TodoScale.Archiver.Legacy;

/// <summary>What a backfill walks: all of `todos`, or (run again once backfilled) the rows in legacy_rejects.</summary>
internal enum BatchSource { Todos, Rejects }

/// <summary>One batch: the rows of its source with After &lt; id &lt;= Upper (null: unbounded).</summary>
internal sealed record BackfillRange(long Sequence, BatchSource Source, Guid? After, Guid? Upper);

/// <summary>
/// The ranges done so far, which end in any order when workers run in parallel: the resume point is the upper
/// end of the ranges done without a gap before it (a rerun redoes the others, which copies nothing twice).
/// </summary>
internal sealed class ResumePoint(Guid? after)
{
    private readonly Lock _lock = new();
    private readonly SortedDictionary<long, Guid?> _done = [];
    private long _next;

    /// <summary>The new resume point, when <paramref name="range"/> closed a gap; null when it did not move (or the walk ended).</summary>
    public Guid? Done(BackfillRange range)
    {
        lock (_lock)
        {
            _done[range.Sequence] = range.Upper;
            var moved = false;
            while (_done.Remove(_next, out var upper))
            {
                (after, moved) = (upper, true);
                _next++;
            }

            return moved ? after : null;
        }
    }
}
