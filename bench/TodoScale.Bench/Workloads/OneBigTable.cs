using System.Diagnostics;
using Npgsql;
using TodoScale.Bench.Data;
using TodoScale.Data.Legacy;

namespace TodoScale.Bench.Workloads;

/// <summary>Workload 5's figures: sizes, backup time and REINDEX time, TodoScale's active table against the one big table.</summary>
public sealed record BigTableResult(
    long ActiveBytes, long BigTableBytes, long ActiveHeapBytes, long BigTableHeapBytes, long ActiveRows, long BigTableRows,
    TimeSpan ActiveBackup, TimeSpan BigTableBackup, long ActiveBackupBytes, long BigTableBackupBytes,
    string Partition, TimeSpan PartitionReindex, TimeSpan BigTableReindex);

/// <summary>
/// Workload 5: after the archive pass, todos_active (what changes, and so what a backup must take every time;
/// archive months are immutable and backed up once) against the original `todos` table holding everything.
/// Backup = pg_dump -Fc of the tables, timed; REINDEX = one partition's primary key against the big table's.
/// </summary>
public static class OneBigTable
{
    public static async Task<BigTableResult> RunAsync(NpgsqlConnection connection, string primaryConnectionString, string workFolder, CancellationToken cancellationToken)
    {
        await Baselines.ExecuteAsync(connection, "CHECKPOINT", cancellationToken);
        var activeBytes = await Baselines.ScalarAsync<long>(connection,
            "SELECT sum(pg_total_relation_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'todos_active'::regclass", cancellationToken);
        var bigBytes = await Baselines.ScalarAsync<long>(connection, $"SELECT pg_total_relation_size('{LegacySchema.Table}')", cancellationToken);
        var activeHeap = await Baselines.ScalarAsync<long>(connection,
            "SELECT sum(pg_table_size(inhrelid))::bigint FROM pg_inherits WHERE inhparent = 'todos_active'::regclass", cancellationToken);
        var bigHeap = await Baselines.ScalarAsync<long>(connection, $"SELECT pg_table_size('{LegacySchema.Table}')", cancellationToken);
        var activeRows = await Baselines.ScalarAsync<long>(connection, "SELECT count(*) FROM todos_active", cancellationToken);
        var bigRows = await Baselines.ScalarAsync<long>(connection, $"SELECT count(*) FROM {LegacySchema.Table}", cancellationToken);

        var (activeBackup, activeBackupBytes) = await DumpAsync(primaryConnectionString, "public.todos_active*", workFolder, cancellationToken);
        var (bigBackup, bigBackupBytes) = await DumpAsync(primaryConnectionString, $"public.{LegacySchema.Table}", workFolder, cancellationToken);

        // The largest partition: the worst case of "one partition".
        var partition = await Baselines.ScalarAsync<string>(connection,
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'todos_active'::regclass ORDER BY pg_relation_size(c.oid) DESC LIMIT 1",
            cancellationToken);
        var partitionReindex = await TimeAsync(connection, $"REINDEX INDEX {partition}_pkey", cancellationToken);
        var bigReindex = await TimeAsync(connection, $"REINDEX INDEX {LegacySchema.Table}_pkey", cancellationToken);
        return new BigTableResult(activeBytes, bigBytes, activeHeap, bigHeap, activeRows, bigRows, activeBackup, bigBackup, activeBackupBytes, bigBackupBytes,
            partition, partitionReindex, bigReindex);
    }

    private static async Task<TimeSpan> TimeAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        await Baselines.ExecuteAsync(connection, sql, cancellationToken);
        return clock.Elapsed;
    }

    private static async Task<(TimeSpan Elapsed, long Bytes)> DumpAsync(string connectionString, string tablePattern, string workFolder, CancellationToken cancellationToken)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        var file = Path.Combine(workFolder, "backup.dump");
        var pgDump = Directory.GetFiles("/usr/lib/postgresql", "pg_dump", SearchOption.AllDirectories).Order().LastOrDefault() ?? "pg_dump";
        var info = new ProcessStartInfo(pgDump,
            ["-h", builder.Host!, "-p", builder.Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "-U", builder.Username!,
             "-d", builder.Database!, "-Fc", "-Z", "1", "-t", tablePattern, "-f", file])
        {
            RedirectStandardError = true,
        };
        info.Environment["PGPASSWORD"] = builder.Password;
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(info) ?? throw new InvalidOperationException("could not start pg_dump");
        var error = await process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        var elapsed = clock.Elapsed;
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"pg_dump -t {tablePattern} exited {process.ExitCode}: {error}");
        }

        var bytes = new FileInfo(file).Length;
        File.Delete(file);
        return (elapsed, bytes);
    }
}
