namespace TodoScale.ServiceDefaults;

/// <summary>
/// The names of TodoScale's own meters. Each service creates its one <c>Meter</c> from <c>IMeterFactory</c>
/// with its name here; <see cref="Extensions.ConfigureOpenTelemetry{TBuilder}"/> exports all of them.
/// </summary>
public static class TodoScaleMeters
{
    public const string Api = "TodoScale.Api";
    public const string Archiver = "TodoScale.Archiver";

    public static readonly IReadOnlyList<string> All = [Api, Archiver];
}
