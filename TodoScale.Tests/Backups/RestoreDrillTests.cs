using System.Text.RegularExpressions;
using Aspire.Hosting;
using Aspire.Hosting.Testing;
using Npgsql;
using TodoScale.AppHost.Infra;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;
using static System.Net.HttpStatusCode;

namespace TodoScale.Tests.Backups;

/// <summary>
/// A process-mode stack of its own (the AppHost sets up pgBackRest: WAL archived from the primary, stanza checked),
/// driven through the operators' CLI as an operator would: `backup run`, `backup list`, `backup restore`.
/// </summary>
public sealed class BackupStackFixture : IAsyncLifetime
{
    public string DataRoot { get; } = TestApp.NewDataRoot();

    public DistributedApplication App { get; private set; } = null!;

    public string Primary { get; private set; } = null!;

    /// <summary>What the AppHost hands the archiver, and an operator sets for the CLI.</summary>
    public (string Name, string Value)[] Settings => [("Backup__Config", PgBackRestConfig.ConfigPath(DataRoot))];

    public async Task InitializeAsync()
    {
        // A primary sized above PostgreSQL's defaults (and the 200 connections `backup restore` once started every copy
        // with), as the benchmark's is: its restored copy must start with at least as much, or recovery aborts.
        App = await TestApp.StartAsync(DataRoot, ["--Infra:PostgresSettings:max_connections=250", "--Infra:PostgresSettings:max_locks_per_transaction=128"]);
        Primary = (await App.GetConnectionStringAsync("todos"))!;
    }

    public async Task DisposeAsync()
    {
        // A restored cluster is the operator's to stop: the tests stop theirs.
        foreach (var restored in Directory.GetDirectories(DataRoot, "restored-*"))
        {
            if (File.Exists(Path.Combine(restored, "postmaster.pid")))
            {
                await ProcessRunner.RunAsync(ProcessRunner.StartInfo(Path.Combine(PostgresServer.BinDirectory, "pg_ctl"), ["-D", restored, "stop", "-m", "immediate"], asPostgres: true), TimeSpan.FromMinutes(1));
            }
        }

        await App.DisposeAsync();
        Directory.Delete(DataRoot, recursive: true);
    }

    public Task<(int ExitCode, string Output)> CliAsync(params string[] args) => OperatorCli.RunAsync(args, Primary, Settings);
}

[Trait(Traits.Needs, Traits.AppHost)]
public sealed partial class RestoreDrillTests(BackupStackFixture stack, ITestOutputHelper log) : IClassFixture<BackupStackFixture>
{
    [Fact]
    public async Task A_restore_to_a_noted_instant_holds_exactly_the_rows_of_that_instant_and_the_live_cluster_is_untouched()
    {
        var (exit, output) = await stack.CliAsync("backup", "run", "--type", "full");
        Assert.True(exit == 0, output);
        Assert.Matches(@"backup run: full backup \d{8}-\d{6}F in \d+ s", output);
        log.WriteLine(output.Split('\n').Last(l => l.StartsWith("backup run:", StringComparison.Ordinal)));

        // Rows written after the backup, then the instant noted with what it holds (count and checksum of the user's rows).
        using var api = ApiClient.ForNewUser(stack.App, stack.DataRoot);
        var first = new List<Guid>();
        for (var i = 0; i < 20; i++)
        {
            first.Add(await api.CreateTodoAsync($"before the instant {i}"));
        }

        var snapshot = $"SELECT count(*)::text || ' ' || md5(string_agg(id::text || ':' || title || ':' || status, ',' ORDER BY id)) FROM todos_active WHERE user_id = '{api.UserId}'";
        await using var owner = await Sql.OpenAsync(stack.Primary);
        var instant = await Sql.ScalarAsync<DateTime>(owner, "SELECT now()");
        var atInstant = await Sql.ScalarAsync<string>(owner, snapshot);
        Assert.StartsWith("20 ", atInstant);

        // Then more written, some deleted, some changed: the live cluster moves on.
        for (var i = 0; i < 10; i++)
        {
            await api.CreateTodoAsync($"after the instant {i}");
        }

        foreach (var id in first.Take(5))
        {
            (await api.DeleteAsync($"/api/todos/{id}")).Is(NoContent);
        }

        foreach (var id in first.Skip(5).Take(3))
        {
            (await api.PatchAsync($"/api/todos/{id}", new { title = "changed after the instant" })).Is(OK);
        }

        var live = await Sql.ScalarAsync<string>(owner, snapshot);
        Assert.StartsWith("25 ", live);

        var folder = Path.Combine(stack.DataRoot, "restored-drill");
        (exit, output) = await stack.CliAsync("backup", "restore", "--to", instant.ToString("yyyy-MM-dd HH:mm:ss.ffffff+00"), "--into", folder);
        Assert.True(exit == 0, output);
        var port = int.Parse(RestoredPort().Match(output).Groups[1].Value);
        log.WriteLine(output.Split('\n').Last(l => l.StartsWith("backup restore:", StringComparison.Ordinal)));

        // The restored cluster, on its own port: exactly the instant's rows, read-only, paused in recovery.
        var restored = new NpgsqlConnectionStringBuilder(stack.Primary) { Port = port, Pooling = false }.ConnectionString;
        Assert.Equal(atInstant, await Sql.ScalarAsync<string>(restored, snapshot));
        Assert.True(await Sql.ScalarAsync<bool>(restored, "SELECT pg_is_in_recovery()"));
        Assert.Equal("paused", await Sql.ScalarAsync<string>(restored, "SELECT pg_get_wal_replay_pause_state()::text"));
        // Started with the primary's sizes (read from pg_control), which a hot standby may not go below.
        Assert.Equal("250", await Sql.ScalarAsync<string>(restored, "SHOW max_connections"));
        Assert.Equal("128", await Sql.ScalarAsync<string>(restored, "SHOW max_locks_per_transaction"));
        var write = await Assert.ThrowsAsync<PostgresException>(() => Sql.ExecuteAsync(restored, "CREATE TABLE written_on_the_copy (id int)"));
        Assert.Equal("25006", write.SqlState); // read_only_sql_transaction

        // The live cluster is as it was, and archiving (a segment finished before the stanza existed may have failed
        // once at the first start; none since the last success).
        Assert.Equal(live, await Sql.ScalarAsync<string>(owner, snapshot));
        Assert.False(await Sql.ScalarAsync<bool>(owner, "SELECT pg_is_in_recovery()"));
        Assert.True(await Sql.ScalarAsync<bool>(owner, "SELECT last_archived_time IS NOT NULL AND (last_failed_time IS NULL OR last_failed_time < last_archived_time) FROM pg_stat_archiver"));

        // The worker took its own full backup at its first start (the repository had none), beside the operator's.
        await Progress.UntilAsync(owner, "SELECT count(*) FROM audit_log WHERE action = 'backup.run' AND actor_kind = 'system' AND actor = 'schedule'",
            (long n) => n >= 1, () => false, "the worker's scheduled full backup in audit_log");

        (exit, output) = await stack.CliAsync("backup", "list");
        Assert.True(exit == 0, output);
        Assert.Matches(@"backup list: \d+ backup\(s\) \(\d+ full\), .* restorable from ", output);
    }

    [Fact]
    public async Task Bad_restores_are_refused_with_the_reason_and_nothing_is_made()
    {
        // A valid time (the folder is what is refused): a minute ago by the clock the CLI reads.
        var valid = DateTimeOffset.UtcNow.AddMinutes(-1).ToString("yyyy-MM-dd HH:mm:ss+00", System.Globalization.CultureInfo.InvariantCulture);
        var live = Path.Combine(stack.DataRoot, "postgres-primary");
        var (exit, output) = await stack.CliAsync("backup", "restore", "--to", valid, "--into", live);
        Assert.Equal(2, exit);
        Assert.Contains("overlaps the live cluster's folder", output);

        var occupied = Directory.CreateDirectory(Path.Combine(stack.DataRoot, "restored-occupied")).FullName;
        await File.WriteAllTextAsync(Path.Combine(occupied, "keep.txt"), "mine");
        (exit, output) = await stack.CliAsync("backup", "restore", "--to", valid, "--into", occupied);
        Assert.Equal(2, exit);
        Assert.Contains("exists and is not empty", output);
        Assert.Equal("mine", await File.ReadAllTextAsync(Path.Combine(occupied, "keep.txt")));

        (exit, output) = await stack.CliAsync("backup", "restore", "--to", "yesterday-ish", "--into", Path.Combine(stack.DataRoot, "restored-never"));
        Assert.Equal(2, exit);
        Assert.Contains("is not a time", output);

        // Before the stack existed, no backup can reach (whether or not one was taken since).
        var before = DateTimeOffset.UtcNow.AddHours(-1).ToString("yyyy-MM-dd HH:mm:ss+00", System.Globalization.CultureInfo.InvariantCulture);
        (exit, output) = await stack.CliAsync("backup", "restore", "--to", before, "--into", Path.Combine(stack.DataRoot, "restored-never"));
        Assert.Equal(1, exit);
        Assert.Matches("no backup (ends before|yet)", output);
        Assert.False(Directory.Exists(Path.Combine(stack.DataRoot, "restored-never")));

        if (ProcessRunner.IsRoot && !OperatingSystem.IsWindows())
        {
            // Run as root the CLI hands the folder to postgres, which must be able to enter every folder above it.
            var closed = Directory.CreateDirectory(Path.Combine(stack.DataRoot, "closed")).FullName;
            File.SetUnixFileMode(closed, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            (exit, output) = await stack.CliAsync("backup", "restore", "--to", valid, "--into", Path.Combine(closed, "restored"));
            Assert.Equal(2, exit);
            Assert.Contains($"the server's user (postgres) cannot enter {closed}", output);
            Assert.Empty(Directory.EnumerateFileSystemEntries(closed));
        }

        (exit, output) = await stack.CliAsync("backup", "run", "--type", "weekly");
        Assert.Equal(2, exit);
        Assert.Contains("--type must be one of full, diff, incr", output);

        (exit, output) = await OperatorCli.RunAsync(["backup", "list"], stack.Primary, ("Backup__Config", Path.Combine(stack.DataRoot, "nowhere.conf")));
        Assert.Equal(1, exit);
        Assert.Contains("no pgBackRest configuration", output);
    }

    [GeneratedRegex(@"up on 127\.0\.0\.1:(\d+)")]
    private static partial Regex RestoredPort();
}
