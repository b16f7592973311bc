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

    /// <summary>The program (a path, or a name looked up on PATH).</summary>
    public string Program { get; set; } = "pgbackrest";

    public string ConfigFullPath => Path.GetFullPath(Config);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (string.IsNullOrWhiteSpace(Config))
        {
            yield return new ValidationResult("Backup:Config must name pgBackRest's configuration file.", [nameof(Config)]);
        }

        if (string.IsNullOrWhiteSpace(Stanza) || !Stanza.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
        {
            yield return new ValidationResult("Backup:Stanza must be letters, digits, '_' or '-'.", [nameof(Stanza)]);
        }
    }

    public IReadOnlyList<string> Errors() => SettingErrors.Of(this, Section);
}
