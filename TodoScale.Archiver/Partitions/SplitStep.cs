namespace TodoScale.Archiver.Partitions;

/// <summary>
/// The step an old partition's split has reached, as partition_split.step holds it (V11's CHECK: copying, copied,
/// swapped, done), in the order the split moves through them.
/// </summary>
public enum SplitStep
{
    /// <summary>The new children exist and the mirror trigger runs; the copy goes on (its position saved per batch).</summary>
    Copying,

    /// <summary>Every row is copied; next, the foreign keys and the swap.</summary>
    Copied,

    /// <summary>The new children are attached and the old one detached; next, dropping it.</summary>
    Swapped,

    /// <summary>The old child and its trigger function are gone.</summary>
    Done,
}

/// <summary>The text partition_split.step stores for each <see cref="SplitStep"/>.</summary>
public static class SplitSteps
{
    /// <summary>Every step's text, in order: exactly the values V11's CHECK allows.</summary>
    public static IReadOnlyList<string> All { get; } = [.. Enum.GetValues<SplitStep>().Select(Text)];

    public static string Text(this SplitStep step) => step switch
    {
        SplitStep.Copying => "copying",
        SplitStep.Copied => "copied",
        SplitStep.Swapped => "swapped",
        SplitStep.Done => "done",
        _ => throw new ArgumentOutOfRangeException(nameof(step), step, null),
    };

    /// <summary>The step a partition_split row names; a value this TodoScale does not know is an error, not a guess.</summary>
    public static SplitStep Parse(string text) =>
        Enum.GetValues<SplitStep>().FirstOrDefault(s => s.Text() == text, (SplitStep)(-1)) is var step && Enum.IsDefined(step)
            ? step
            : throw new InvalidDataException($"partition_split has step '{text}', which this TodoScale does not know ({string.Join(", ", All)})");
}
