using TodoScale.Archiver.Database;
using TodoScale.Archiver.Legacy;

namespace TodoScale.Tests.Legacy;

/// <summary>Where a backfill resumes when parallel workers finish their ranges in any order, and the batch SQL it runs, without a server.</summary>
public sealed class BackfillRangesTests
{
    private static Guid Id(int n) => new($"00000000-0000-0000-0000-{n:000000000000}");

    private static BackfillRange Range(long sequence) =>
        new(sequence, BatchSource.Todos, sequence == 0 ? null : Id((int)sequence), Id((int)sequence + 1));

    [Fact]
    public void The_resume_point_moves_only_over_ranges_done_without_a_gap_before_them()
    {
        var resume = new ResumePoint(after: null);

        Assert.Null(resume.Done(Range(1)));              // range 0 still running: a rerun must start before range 1
        Assert.Null(resume.Done(Range(3)));
        Assert.Equal(Id(2), resume.Done(Range(0)));      // 0 and 1 done: resume after 1's upper end
        Assert.Equal(Id(4), resume.Done(Range(2)));      // the gap closed: 2 and 3 at once
        Assert.Null(resume.Done(Range(5)));
        Assert.Equal(Id(6), resume.Done(Range(4)));
        Assert.Null(resume.Done(new BackfillRange(6, BatchSource.Todos, Id(6), Upper: null))); // the walk ended: nothing to save
    }

    [Fact]
    public void The_last_range_is_open_ended_and_ends_the_walk_without_moving_the_point_past_the_end()
    {
        var resume = new ResumePoint(Id(9));
        Assert.Null(resume.Done(new BackfillRange(0, BatchSource.Todos, Id(9), Upper: null)));
    }

    [Theory]
    [InlineData("Legacy/Sql/backfill-batch.sql")]
    [InlineData("Legacy/Sql/serving-views.sql")]
    public void Every_embedded_sql_file_loads_without_its_comments(string path)
    {
        var sql = SqlResource.Read(path);
        Assert.DoesNotContain("\n--", "\n" + sql);
        Assert.Contains("{", sql); // its placeholders are there to fill
        Assert.Throws<InvalidOperationException>(() => SqlResource.Fill(sql, []));
        Assert.Throws<InvalidOperationException>(() => SqlResource.Fill(sql, [("no_such_placeholder", "x")], complete: false));
    }
}
