using TodoScale.Data.Partitioning;
using static TodoScale.Data.Schema.Catalog;
using static TodoScale.Data.SqlText;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>The exports on disk (`cold list`) and the months due for export (retention).</summary>
public sealed partial class ColdStore
{
    /// <summary>Every exported month in the folder, oldest first (without <paramref name="withLiveState"/>, no database is asked).</summary>
    public async Task<IReadOnlyList<ColdMonth>> ListAsync(bool withLiveState, CancellationToken cancellationToken)
    {
        var manifests = Manifests();
        if (!withLiveState)
        {
            return [.. manifests.Select(m => new ColdMonth(m.Manifest, m.Folder, null))];
        }

        var attached = new HashSet<string>(StringComparer.Ordinal);
        foreach (var table in ArchiveMonths.Tables)
        {
            foreach (var live in await ArchiveMonths.AttachedAsync(owner, table, cancellationToken))
            {
                attached.Add(ArchiveMonths.PartitionName(table, live));
            }
        }

        return [.. manifests.Select(m => new ColdMonth(m.Manifest, m.Folder, [.. m.Manifest.Tables.Select(t => t.Partition).Where(attached.Contains)]))];
    }

    /// <summary>The manifests under the folder, oldest month first; a folder without a readable manifest is not an export.</summary>
    public IReadOnlyList<(ColdManifest Manifest, string Folder)> Manifests()
    {
        if (!Directory.Exists(Folder))
        {
            return [];
        }

        var found = new List<(ColdManifest, string)>();
        foreach (var directory in Directory.EnumerateDirectories(Folder).Order(StringComparer.Ordinal))
        {
            if (ArchiveMonths.Parse(Path.GetFileName(directory)) is { } month && ReadManifest(month) is { } manifest)
            {
                found.Add((manifest, directory));
            }
        }

        return found;
    }

    /// <summary>The manifest of <paramref name="month"/>, or null when it was never exported here.</summary>
    public ColdManifest? ReadManifest(DateOnly month)
    {
        var path = Path.Combine(MonthFolder(month), ColdManifest.FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        ColdManifest manifest;
        try
        {
            manifest = ColdManifest.FromJson(File.ReadAllText(path));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new ColdStorageException($"{path} is not a readable manifest: {e.Message}", e);
        }

        return manifest.Format == ColdManifest.CurrentFormat
            ? manifest
            : throw new ColdStorageException($"{path} has manifest format {manifest.Format}; this TodoScale reads format {ColdManifest.CurrentFormat}");
    }

    /// <summary>Months past retention: every archive-month table (attached, or detached by an interrupted drop) older than RetentionMonths.</summary>
    public async Task<List<DateOnly>> DueAsync(CancellationToken cancellationToken)
    {
        var keepFrom = ArchiveMonths.MonthOf(clock.GetUtcNow()).AddMonths(-options.RetentionMonths);
        var due = new SortedSet<DateOnly>();
        await using var command = owner.CreateCommand(
            "SELECT relname FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace AND relname ~ '_y[0-9]{4}m[0-9]{2}$'");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var name = reader.GetString(0);
            foreach (var table in ArchiveMonths.Tables)
            {
                if (ArchiveMonths.MonthOfPartition(table, name) is { } month && month < keepFrom)
                {
                    due.Add(month);
                }
            }
        }

        return [.. due];
    }
}
