using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Bench;

/// <summary>
/// The benchmark end to end at its tiny scale (seconds of load): it starts its own stack, generates, runs all six
/// workloads and writes a complete report with its plots. Speed is not checked here (that is the report's job);
/// completeness is.
/// </summary>
[Trait(Traits.Needs, Traits.AppHost)]
public sealed class BenchSmokeTests
{
    [Fact]
    public Task Tiny_run_writes_a_complete_report_with_every_target_and_its_plots() =>
        RunTinyAsync([], "*-tiny.md", TimeSpan.FromMinutes(8), async (output, text) =>
        {
            string[] sections =
            [
                "## Targets", "## 1. First page at the database", "## 2. The same page through the API", "## 3. Archival",
                "## 4. Scale curve", "## 5. One big table against TodoScale", "## 6. Metrics overhead", "## 7. Index usage after the run",
                "## Machine and PostgreSQL", "## Data",
            ];
            Assert.All(sections, section => Assert.Contains(section, text, StringComparison.Ordinal));

            // Every workload has its targets in the table, each judged met or not met, none without a number.
            var targets = TargetRows(text);
            Assert.Equal(["1", "2", "3", "4", "5", "6"], targets.Select(l => l.Split('|')[1].Trim()).Distinct());
            Assert.Equal(16, targets.Count);
            // The peer API ran under the same load, and TodoScale's throughput is given as a ratio to it.
            Assert.Contains(targets, row => row.Contains("the peer API's", StringComparison.Ordinal));
            Assert.Matches(@"\| Peer API \(EF Core, one unpartitioned table, no replica or cache\) \| [0-9,]+ \|", text);
            Assert.All(targets, row => Assert.Matches(@"\| (met|\*\*not met\*\*) \|$", row.TrimEnd()));
            Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
            // The index report: the page's index was scanned by the run.
            Assert.Matches(@"todos_active_user_created_ix +│ +[0-9]+ of 16 │ +[1-9][0-9,]* │", text);
            Assert.Contains("./build.sh bench --scale tiny", text, StringComparison.Ordinal);

            // Both archive passes (on its own, then under the API's load) moved rows.
            foreach (var pass in new[] { "on its own", "during API load" })
            {
                var moved = System.Text.RegularExpressions.Regex.Match(text, $@"\| {pass} \| ([0-9,]+) \|");
                Assert.True(moved.Success && long.Parse(moved.Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture) > 0, $"the pass {pass} moved nothing");
            }

            // The bare set-based move put the pass's rows back and moved the very same number again; the archiver's
            // second pass over them, put back the same way, moved at least those.
            static long Rows(System.Text.RegularExpressions.Match m) =>
                long.Parse(m.Groups[1].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
            var archiver = System.Text.RegularExpressions.Regex.Match(text, @"\| archiver, first pass \(rows where written\) \| ([0-9,]+) \|");
            var bare = System.Text.RegularExpressions.Regex.Match(text, @"\| bare move, rows put back \([0-9]+ batches, [0-9]+ workers\) \| ([0-9,]+) \| ([0-9,]+) \|");
            var again = System.Text.RegularExpressions.Regex.Match(text, @"\| archiver, rows put back \| ([0-9,]+) \| ([0-9,]+) \|");
            Assert.True(archiver.Success && bare.Success && again.Success, "the archiver against the bare move is missing");
            Assert.Equal(Rows(archiver), Rows(bare));
            Assert.InRange(Rows(again), Rows(bare), Rows(bare) + 100);
            // Both found the rows spread as the first pass left them: put back into its holes, on as many heap pages.
            static long Pages(System.Text.RegularExpressions.Match m) =>
                long.Parse(m.Groups[2].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture);
            Assert.InRange(Pages(again), Pages(bare) * 4 / 5, Pages(bare) * 5 / 4);
            Assert.True(Pages(bare) > Rows(bare) / 10, $"the {Rows(bare)} rows put back sit on {Pages(bare)} pages: packed, not where the pass found them");
            Assert.Contains(targets, row => row.Contains("a bare set-based move of the same rows, same layout", StringComparison.Ordinal));
            // pg_waldump read each move's WAL: the rows moved are there as heap deletes into the active table.
            Assert.DoesNotContain("pg_waldump could not read", text, StringComparison.Ordinal);
            var deletes = System.Text.RegularExpressions.Regex.Match(text, @"\| Heap/DELETE \| ([0-9,]+) \([0-9,]+\) \| ([0-9,]+) \([0-9,]+\) \| ([0-9,]+) \([0-9,]+\) \|");
            Assert.True(deletes.Success, "the WAL profile of the three moves is missing");
            Assert.Equal(Rows(bare), long.Parse(deletes.Groups[2].Value.Replace(",", "", StringComparison.Ordinal), System.Globalization.CultureInfo.InvariantCulture));
            Assert.Matches(@"\| todos_active \| [1-9][0-9,]* \| [1-9][0-9,]* \| [1-9][0-9,]* \|", text);

            // The plots the report links exist and are PNGs.
            var plots = System.Text.RegularExpressions.Regex.Matches(text, @"\]\(([^)]+\.png)\)").Select(m => m.Groups[1].Value).ToList();
            Assert.Equal(4, plots.Count);
            foreach (var plot in plots)
            {
                var bytes = await File.ReadAllBytesAsync(Path.Combine(output, plot));
                Assert.True(bytes.Length > 5_000 && bytes[1] == 'P' && bytes[2] == 'N' && bytes[3] == 'G', $"{plot} is not a plot");
            }
        });

    [Fact]
    public Task Tiny_legacy_run_migrates_todos_and_reports_every_figure() =>
        RunTinyAsync(["--workload", "legacy"], "*-tiny-legacy.md", TimeSpan.FromMinutes(5), (_, text) =>
        {
            Assert.Equal(4, TargetRows(text).Count);
            Assert.Contains("0 mismatch(es)", text, StringComparison.Ordinal);
            Assert.Matches(@"rows in todos: [0-9,]+ taken, 0 rejected, 0 other", text); // the generated dirt is all taken by the rules
            Assert.Contains("legacy finalize: todos, its triggers and the legacy views dropped", text, StringComparison.Ordinal);
            Assert.Matches(@"\| trigger on \| [0-9,]+ in", text);
            Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
            Assert.Contains("./build.sh bench --scale tiny --workload legacy", text, StringComparison.Ordinal);
            return Task.CompletedTask;
        });

    [Fact]
    public Task Tiny_split_run_resplits_under_writes_and_reports_every_figure() =>
        RunTinyAsync(["--workload", "split"], "*-tiny-split.md", TimeSpan.FromMinutes(4), (_, text) =>
        {
            var targets = TargetRows(text);
            Assert.Equal(4, targets.Count);
            Assert.Contains("32 old partition(s) split to modulus 32", text, StringComparison.Ordinal);
            // No write failed and no row was lost or doubled (these two are exact, not timings).
            Assert.Matches(@"\| writes failed during the split \| 0 \| 0 \| met \|", text);
            Assert.Matches(@"\| rows after = generated \+ inserted by the writers \| equal \| ([0-9,]+) vs \1 \| met \|", text);
            Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
            Assert.Contains("./build.sh bench --scale tiny --workload split", text, StringComparison.Ordinal);
            return Task.CompletedTask;
        });

    [Fact]
    public Task Tiny_soak_run_reports_errors_and_memory_over_time_with_its_plots() =>
        RunTinyAsync(["--workload", "soak"], "*-tiny-soak.md", TimeSpan.FromMinutes(4), (folder, text) =>
        {
            Assert.Equal(3, TargetRows(text).Count);
            // Errors are counted exactly (not a timing): the API answers every request of a 30-second soak.
            Assert.Matches(@"\| errors \(5xx, failed connections, 4xx other than the API's designed 409\) \| 0 \| 0 of [0-9,]+ \| met \|", text);
            Assert.Matches(@"The archive pass ran from \d+ s to \d+ s", text);
            Assert.Equal(3, Directory.GetFiles(folder, "*-tiny-soak-*.png").Length);
            Assert.DoesNotContain("NaN", text, StringComparison.Ordinal);
            Assert.Contains("./build.sh bench --scale tiny --workload soak", text, StringComparison.Ordinal);
            return Task.CompletedTask;
        });

    /// <summary>Runs the built benchmark at its tiny scale into a folder of its own, checks its one report, deletes the folder.</summary>
    internal static async Task RunTinyAsync(string[] args, string report, TimeSpan timeout, Func<string, string, Task> check)
    {
        var output = Directory.CreateTempSubdirectory("todoscale-bench-test-").FullName;
        try
        {
            var bench = Path.Combine(RepositoryPaths.Root, "bench", "TodoScale.Bench", "bin", RepositoryPaths.Configuration, "net10.0", "TodoScale.Bench.dll");
            var (exitCode, log) = await ProcessRunner.RunAsync(
                ProcessRunner.StartInfo("dotnet", [bench, "--scale", "tiny", .. args, "--output", output]), timeout);
            Assert.True(exitCode == 0, $"bench exited {exitCode}: {log[^Math.Min(log.Length, 3000)..]}");
            await check(output, await File.ReadAllTextAsync(Assert.Single(Directory.GetFiles(output, report))));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>The rows of a report's targets table (after its header and separator).</summary>
    private static List<string> TargetRows(string text) =>
        [.. text.Split('\n').SkipWhile(l => !l.StartsWith("## Targets", StringComparison.Ordinal)).Skip(4).TakeWhile(l => l.StartsWith('|'))];
}
