using Npgsql;

namespace TodoScale.Data.Legacy;

/// <summary>
/// The phases of the migration from `todos` (legacy_migration.phase), in the order the `legacy` verbs move it; the
/// API reads it to know which side it serves from.
/// </summary>
public static class LegacyPhase
{
    public const string Started = "started";
    public const string Backfilled = "backfilled";
    public const string Validated = "validated";
    public const string Switched = "switched";
    public const string RolledBack = "rolled_back";
    public const string Finalized = "finalized";

    /// <summary>The phases in which the API serves from `todos`: before the switch, and after a rollback.</summary>
    public static bool ServesFromLegacy(string? phase) => phase is Started or Backfilled or Validated or RolledBack;

    /// <summary>
    /// The phase of a migration from `todos` under way (started, not yet finalized), or null when there is none:
    /// until finalize, `todos` and TodoScale's tables are kept equal row for row, so the archiver and a re-split hold off.
    /// </summary>
    public static async Task<string?> InProgressAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("SELECT phase FROM legacy_migration WHERE phase <> @finalized", connection);
        command.Parameters.Add(new NpgsqlParameter<string>("finalized", Finalized));
        return await command.ExecuteScalarAsync(cancellationToken) as string;
    }
}
