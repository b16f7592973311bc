using System.ComponentModel.DataAnnotations;

namespace TodoScale.Archiver.Settings;

/// <summary>Physical backups and point-in-time recovery with pgBackRest (section <c>Backup</c>).</summary>
public sealed class BackupOptions : IValidatableObject
{
    public const string Section = "Backup";

    /// <summary>
    /// pgBackRest's configuration file for the primary (process mode's AppHost writes it under the data root and
    /// hands its path to the archiver). Relative: to the working directory, so the CLI run from the repository
    /// finds the default stack's.
    /// </summary>
    public string Config { get; set; } = Path.Combine(".data", "pgbackrest", "pgbackrest.conf");

    /// <summary>The stanza (pgBackRest's name for one cluster's backups).</summary>
    public string Stanza { get; set; } = "todos";

    /// <summary>Full backups kept (with the WAL they need); older ones expire after each backup.</summary>
    [Range(1, 100)]
    public int RetentionFull { get; set; } = 4;

    /// <summary>Differential backups kept.</summary>
    [Range(1, 1000)]
    public int RetentionDiff { get; set; } = 7;

    /// <summary>`serve` takes a full backup when the newest full is this old (or there is none): weekly.</summary>
    public TimeSpan FullEvery { get; set; } = TimeSpan.FromDays(7);

    /// <summary>`serve` takes a differential backup when the newest backup of any type is this old: daily.</summary>
    public TimeSpan DiffEvery { get; set; } = TimeSpan.FromDays(1);

    /// <summary>How often `serve` reads the repository (the backup gauges) and checks whether a backup is due.</summary>
    public TimeSpan CheckEvery { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Whether `serve` takes backups on the schedule above (off: only `backup run`; the gauges stay).</summary>
    public bool Schedule { get; set; } = true;

    /// <summary>The program (a path, or a name looked up on PATH).</summary>
    public string Program { get; set; } = "pgbackrest";

    public string ConfigFullPath => Path.GetFullPath(Config);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(Config))
        {
            yield return new ValidationResult("Backup:Config must name pgBackRest's configuration file.", [nameof(Config)]);
        }

        if (DiffEvery < TimeSpan.FromMinutes(1) || FullEvery < DiffEvery)
        {
            yield return new ValidationResult("Backup:DiffEvery must be at least 1 minute and Backup:FullEvery at least DiffEvery.", [nameof(DiffEvery)]);
        }

        if (CheckEvery < TimeSpan.FromSeconds(1))
        {
            yield return new ValidationResult("Backup:CheckEvery must be at least 1 second.", [nameof(CheckEvery)]);
        }

        if (string.IsNullOrWhiteSpace(Stanza) || !Stanza.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            yield return new ValidationResult("Backup:Stanza must be letters, digits, '_' or '-'.", [nameof(Stanza)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
