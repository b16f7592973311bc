using TodoScale.Data.Partitioning;

namespace TodoScale.Archiver.ColdStorage;

/// <summary>One exported month in one copy folder: ok, missing (no manifest, or a file gone) or damaged (a file whose size or sha256 is not the manifest's).</summary>
public sealed record ColdCopyState(string Month, string Folder, string State, string? Detail, bool Repaired = false)
{
    public const string Ok = "ok";
    public const string Missing = "missing";
    public const string Damaged = "damaged";
}

/// <summary>
/// The copies of cold storage (Maintenance:ColdCopyFolders, the "second region"): an archive month is immutable
/// once exported, so each copy is made once, verified by sha256 against the manifest, and published by a rename;
/// upkeep and `cold verify` check them all (and the first folder) and re-make a missing or damaged one from a good
/// copy.
/// </summary>
public sealed partial class ColdStore
{
    /// <summary>The copy folders, in the order `cold restore` tries them after the first folder.</summary>
    public IReadOnlyList<string> CopyFolders => [.. options.ColdCopyFolders.Select(Path.GetFullPath)];

    /// <summary>Every folder that may hold a month's export: the first (Maintenance:ColdStorageFolder), then the copies.</summary>
    private IEnumerable<string> Sources(DateOnly month) =>
        [MonthFolder(month), .. CopyFolders.Select(copy => Path.Combine(copy, ArchiveMonths.Format(month)))];

    /// <summary>Copies a verified export to every copy folder; throws naming each copy that failed (the others are made).</summary>
    private async Task CopyMonthAsync(DateOnly month, ColdManifest manifest, CancellationToken cancellationToken)
    {
        var failures = new List<string>();
        foreach (var copy in CopyFolders)
        {
            try
            {
                await CopyAsync(manifest, MonthFolder(month), copy, cancellationToken);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or ColdStorageException)
            {
                failures.Add($"{copy}: {e.Message}");
            }
        }

        if (failures.Count > 0)
        {
            throw new ColdStorageException(
                $"{manifest.Month} is exported and verified in {Folder}, but {failures.Count} of its {CopyFolders.Count} copies failed ({string.Join("; ", failures)}); its partitions are kept");
        }
    }

    /// <summary>Copies the month's files and manifest from <paramref name="source"/> into <paramref name="copyRoot"/>: staged, each file's sha256 checked, then renamed into place.</summary>
    private static async Task CopyAsync(ColdManifest manifest, string source, string copyRoot, CancellationToken cancellationToken)
    {
        Directory.CreateDirectory(copyRoot);
        var staging = Path.Combine(copyRoot, $".{manifest.Month}.copy-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            foreach (var table in manifest.Tables)
            {
                var path = Path.Combine(staging, table.File);
                await using (var from = File.OpenRead(Path.Combine(source, table.File)))
                await using (var to = File.Create(path))
                {
                    await from.CopyToAsync(to, cancellationToken);
                    await to.FlushAsync(cancellationToken);
                    to.Flush(flushToDisk: true);
                }

                var sha = await Sha256Async(path, cancellationToken);
                if (sha != table.FileSha256)
                {
                    throw new ColdVerificationException($"the copy of {table.File} has sha256 {sha}, the manifest says {table.FileSha256}");
                }
            }

            await File.WriteAllTextAsync(Path.Combine(staging, ColdManifest.FileName), manifest.ToJson(), cancellationToken);
            Publish(staging, Path.Combine(copyRoot, manifest.Month));
        }
        finally
        {
            if (Directory.Exists(staging))
            {
                Directory.Delete(staging, recursive: true);
            }
        }
    }

    /// <summary>
    /// Checks every exported month in the first folder and in every copy folder (<paramref name="deep"/>: each file's
    /// sha256; otherwise its size) and, with <paramref name="repair"/>, re-makes a missing or damaged one from a
    /// folder whose files verify.
    /// </summary>
    public async Task<IReadOnlyList<ColdCopyState>> CheckCopiesAsync(bool deep, bool repair, CancellationToken cancellationToken)
    {
        var states = new List<ColdCopyState>();
        foreach (var (manifest, _) in Manifests())
        {
            var month = ArchiveMonths.Parse(manifest.Month)!.Value;
            foreach (var copy in (string[])[Folder, .. CopyFolders])
            {
                var state = await StateAsync(manifest, Path.Combine(copy, manifest.Month), deep, cancellationToken);
                if (state.State != ColdCopyState.Ok && repair)
                {
                    try
                    {
                        var good = await GoodSourceAsync(manifest, month, cancellationToken)
                            ?? throw new ColdVerificationException($"no folder holds {manifest.Month}'s files intact to copy from");
                        await CopyAsync(manifest, good, copy, cancellationToken);
                        state = state with { State = ColdCopyState.Ok, Repaired = true, Detail = $"{state.State} ({state.Detail}): copied again from {good}" };
                    }
                    catch (Exception e) when (e is IOException or UnauthorizedAccessException or ColdStorageException)
                    {
                        state = state with { Detail = $"{state.Detail}; not repaired: {e.Message}" };
                    }
                }

                states.Add(state with { Folder = copy });
            }
        }

        metrics?.ObserveCopies([.. states.Select(s => s.State)]);
        return states;
    }

    /// <summary>The state of one month in one folder, against the manifest of the first folder.</summary>
    private static async Task<ColdCopyState> StateAsync(ColdManifest manifest, string folder, bool deep, CancellationToken cancellationToken)
    {
        if (!File.Exists(Path.Combine(folder, ColdManifest.FileName)))
        {
            return new ColdCopyState(manifest.Month, folder, ColdCopyState.Missing, "no manifest");
        }

        foreach (var table in manifest.Tables)
        {
            var path = Path.Combine(folder, table.File);
            if (!File.Exists(path))
            {
                return new ColdCopyState(manifest.Month, folder, ColdCopyState.Missing, $"{table.File} is gone");
            }

            if (new FileInfo(path).Length != table.FileBytes)
            {
                return new ColdCopyState(manifest.Month, folder, ColdCopyState.Damaged, $"{table.File} has {new FileInfo(path).Length} bytes, the manifest says {table.FileBytes}");
            }

            if (deep && await Sha256Async(path, cancellationToken) is var sha && sha != table.FileSha256)
            {
                return new ColdCopyState(manifest.Month, folder, ColdCopyState.Damaged, $"{table.File} has sha256 {sha}, the manifest says {table.FileSha256}");
            }
        }

        return new ColdCopyState(manifest.Month, folder, ColdCopyState.Ok, null);
    }

    /// <summary>The first folder (the first, then the copies) whose files all match the manifest's sha256.</summary>
    private async Task<string?> GoodSourceAsync(ColdManifest manifest, DateOnly month, CancellationToken cancellationToken)
    {
        foreach (var folder in Sources(month))
        {
            if ((await StateAsync(manifest, folder, deep: true, cancellationToken)).State == ColdCopyState.Ok)
            {
                return folder;
            }
        }

        return null;
    }

    /// <summary>The manifest of a month from the first folder, else from the first copy that has one.</summary>
    private ColdManifest? ReadManifestAnywhere(DateOnly month)
    {
        if (ReadManifest(month) is { } manifest)
        {
            return manifest;
        }

        foreach (var folder in Sources(month).Skip(1))
        {
            var path = Path.Combine(folder, ColdManifest.FileName);
            if (File.Exists(path))
            {
                try
                {
                    return ColdManifest.FromJson(File.ReadAllText(path));
                }
                catch (System.Text.Json.JsonException)
                {
                    // A damaged manifest in a copy: the next copy may have a good one.
                }
            }
        }

        return null;
    }

    /// <summary>Where each table's file is read from for a restore: the first folder whose file's sha256 is the manifest's.</summary>
    private async Task<Dictionary<string, string>> ReadableFilesAsync(ColdManifest manifest, DateOnly month, CancellationToken cancellationToken)
    {
        var files = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var table in manifest.Tables)
        {
            var tried = new List<string>();
            foreach (var folder in Sources(month))
            {
                var path = Path.Combine(folder, table.File);
                if (!File.Exists(path))
                {
                    tried.Add($"{folder}: missing");
                    continue;
                }

                var sha = await Sha256Async(path, cancellationToken);
                if (sha == table.FileSha256)
                {
                    files[table.Table] = path;
                    break;
                }

                tried.Add($"{folder}: sha256 {sha}");
            }

            if (!files.ContainsKey(table.Table))
            {
                throw new ColdVerificationException(
                    $"{table.File} of {manifest.Month} is damaged or missing in every copy (the manifest says sha256 {table.FileSha256}; {string.Join("; ", tried)}); nothing restored");
            }
        }

        return files;
    }
}
