using Spectre.Console;
using Spectre.Console.Rendering;

namespace TodoScale.Archiver.Cli;

/// <summary>Rows per second in a progress bar (Spectre's transfer-speed column speaks bytes).</summary>
internal sealed class RowsPerSecondColumn : ProgressColumn
{
    public override IRenderable Render(RenderOptions options, ProgressTask task, TimeSpan deltaTime) =>
        new Text(task.Speed is { } speed ? $"{speed:N0} rows/s" : "");
}
