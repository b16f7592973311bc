using ScottPlot;

namespace TodoScale.Bench.Reporting;

/// <summary>The report's PNG plots (ScottPlot): latency percentiles per variant, and the scale curve.</summary>
public static class Plots
{
    /// <summary>Grouped bars: p50 and p99 (ms) for each variant.</summary>
    public static void Percentiles(string path, string title, IReadOnlyList<(string Label, double P50, double P99)> variants)
    {
        var plot = new Plot();
        var p50Color = Colors.SteelBlue;
        var p99Color = Colors.OrangeRed;
        var bars = new List<Bar>();
        for (var i = 0; i < variants.Count; i++)
        {
            bars.Add(new Bar { Position = i * 3, Value = variants[i].P50, FillColor = p50Color });
            bars.Add(new Bar { Position = i * 3 + 1, Value = variants[i].P99, FillColor = p99Color });
        }

        plot.Add.Bars(bars);
        plot.Axes.Bottom.TickGenerator = new ScottPlot.TickGenerators.NumericManual(
            [.. variants.Select((_, i) => i * 3 + 0.5)], [.. variants.Select(v => Wrap(v.Label))]);
        plot.Axes.Bottom.MajorTickStyle.Length = 0;
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "p50", FillColor = p50Color });
        plot.Legend.ManualItems.Add(new LegendItem { LabelText = "p99", FillColor = p99Color });
        plot.Legend.Alignment = Alignment.UpperLeft;
        plot.ShowLegend();
        plot.Title(title);
        plot.YLabel("milliseconds");
        plot.Axes.Margins(bottom: 0);
        plot.SavePng(path, 1100, 560);
    }

    /// <summary>One figure over time (seconds): each series a line, the archive pass shaded.</summary>
    public static void OverTime(string path, string title, string yLabel, IReadOnlyList<(string Label, double[] Xs, double[] Ys)> series, (double From, double To)? marked = null)
    {
        var plot = new Plot();
        if (marked is { } span && double.IsFinite(span.From) && double.IsFinite(span.To))
        {
            var shade = plot.Add.HorizontalSpan(span.From, span.To);
            shade.FillStyle.Color = Colors.Gray.WithAlpha(0.2);
            shade.LegendText = "archive pass";
        }

        foreach (var (label, xs, ys) in series)
        {
            var line = plot.Add.Scatter(xs, ys);
            line.LegendText = label;
            line.MarkerSize = 3;
        }

        plot.Legend.Alignment = Alignment.UpperLeft;
        plot.ShowLegend();
        plot.Title(title);
        plot.XLabel("seconds into the soak");
        plot.YLabel(yLabel);
        plot.Axes.Margins(bottom: 0);
        plot.SavePng(path, 1100, 420);
    }

    /// <summary>p99 (ms) against rows in todos_active.</summary>
    public static void ScaleCurve(string path, IReadOnlyList<(long Rows, double P50, double P99)> points)
    {
        var plot = new Plot();
        var xs = points.Select(p => (double)p.Rows / 1_000_000).ToArray();
        var p99 = plot.Add.Scatter(xs, points.Select(p => p.P99).ToArray());
        p99.LegendText = "p99";
        var p50 = plot.Add.Scatter(xs, points.Select(p => p.P50).ToArray());
        p50.LegendText = "p50";
        plot.ShowLegend();
        plot.Title("First page of open todos (typical users) as todos_active grows");
        plot.XLabel("rows in todos_active (millions)");
        plot.YLabel("milliseconds");
        plot.Axes.SetLimitsY(0, Math.Max(0.05, points.Max(p => p.P99) * 1.3));
        plot.SavePng(path, 900, 500);
    }

    private static string Wrap(string label)
    {
        var words = label.Split(' ');
        var lines = new List<string>();
        var line = "";
        foreach (var word in words)
        {
            if (line.Length + word.Length > 22 && line.Length > 0)
            {
                lines.Add(line);
                line = "";
            }

            line = line.Length == 0 ? word : $"{line} {word}";
        }

        lines.Add(line);
        return string.Join('\n', lines);
    }
}
