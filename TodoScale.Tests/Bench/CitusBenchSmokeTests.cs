using System.Globalization;
using System.Text.RegularExpressions;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Bench;

/// <summary>
/// `bench --engine citus` end to end at the tiny scale: a stack on one PostgreSQL, then one on Citus (coordinator +
/// 2 workers), the same data loaded into each, the page, API and archive workloads on both, one report. Speed is the
/// report's business; here: every figure is there for both engines, the page on Citus went to one shard, both
/// archive passes moved rows, and the coordinator's share was measured against the worker's shard.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
[NeedsCitus]
public sealed class CitusBenchSmokeTests
{
    [EngineFact]
    public Task Tiny_citus_run_reports_both_engines_side_by_side_with_the_page_routed_to_one_shard() =>
        BenchSmokeTests.RunTinyAsync(["--engine", "citus"], "*-tiny-citus.md", TimeSpan.FromMinutes(10), (_, text) =>
        {
            string[] sections = ["## Side by side", "## The page on Citus: routed to one shard", "## What the coordinator adds", "## Distributed shards per node (Citus)", "## What changes on real machines", "## Machine and PostgreSQL"];
            Assert.All(sections, section => Assert.Contains(section, text, StringComparison.Ordinal));
            Assert.Contains("**Task Count: 1**", text, StringComparison.Ordinal);
            Assert.Contains("todos_active: 16 hash partitions", text, StringComparison.Ordinal);
            Assert.Matches(@"todos_active: one distributed table of \d+ shards over 2 workers", text);

            // Both engines got the same rows and both archive passes moved some.
            var loaded = Regex.Match(text, @"\| rows loaded [^|]*\| ([0-9,]+) at [^|]*\| ([0-9,]+) at ");
            Assert.True(loaded.Success, "no rows-loaded row");
            Assert.Equal(loaded.Groups[1].Value, loaded.Groups[2].Value);
            var archived = Regex.Match(text, @"\| archive pass [^|]*\| ([0-9,]+) todos in [^|]*\| ([0-9,]+) todos in ");
            Assert.True(archived.Success, "no archive row");
            Assert.All(new[] { archived.Groups[1].Value, archived.Groups[2].Value }, moved => Assert.True(long.Parse(moved, NumberStyles.AllowThousands, CultureInfo.InvariantCulture) > 0, "a pass moved nothing"));

            // Two workers hold shards, the coordinator none of the distributed tables'.
            var nodes = text.Split('\n').SkipWhile(l => !l.StartsWith("## Distributed shards per node", StringComparison.Ordinal)).Skip(4).TakeWhile(l => l.StartsWith('|')).ToList();
            Assert.Equal(2, nodes.Count);
            Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
            Assert.Contains("./build.sh bench --scale tiny --engine citus", text, StringComparison.Ordinal);
            return Task.CompletedTask;
        });
}
