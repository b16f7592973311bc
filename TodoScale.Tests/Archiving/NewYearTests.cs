using TodoScale.Archiver.Archiving;
using TodoScale.Data.Partitioning;
using TodoScale.Testing;
using TodoScale.Tests.Infrastructure;
using Xunit.Abstractions;

namespace TodoScale.Tests.Archiving;

/// <summary>
/// The turn of a year for real: a PostgreSQL server and the archiver CLI on one faked clock (libfaketime) at 23:59:50
/// UTC on 31 December 2027, crossing midnight during the test. The test sets every clock involved, so its dates
/// are literal. Nothing here waits on a sleep: each step waits until the server's now() shows the time it needs.
/// </summary>
public sealed class NewYearTests(ITestOutputHelper log) : IAsyncLifetime, IDisposable
{
    private static readonly DateTimeOffset Midnight = new(2028, 1, 1, 0, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset TenSecondsBefore = Midnight.AddSeconds(-10);
    private static readonly TimeSpan Patience = TimeSpan.FromMinutes(2);

    // Set up in September: `migrate` premakes September to December 2027, nothing of 2028.
    private readonly FakeClock _clock = new(new DateTimeOffset(2027, 9, 15, 12, 0, 0, TimeSpan.Zero));
    private readonly string _cold = Directory.CreateTempSubdirectory("todoscale-cold-").FullName;
    private PostgresServer _server = null!;
    private string _db = "";

    public async Task InitializeAsync()
    {
        _server = new PostgresServer(_clock);
        await _server.InitializeAsync();
    }

    public Task DisposeAsync() => _server.DisposeAsync();

    public void Dispose()
    {
        _clock.Dispose();
        Directory.Delete(_cold, recursive: true);
    }

    [Fact]
    public async Task Archive_upkeep_retention_and_status_run_across_midnight_on_new_years_eve_and_rows_land_in_the_month_they_were_archived()
    {
        var db = _db = await _server.CreateDatabaseAsync("new_year"); // _db: what CliAsync runs against
        var migrate = await CliAsync("migrate");
        Assert.True(migrate.ExitCode == 0, migrate.Output);
        Assert.Equal(["2027-09", "2027-10", "2027-11", "2027-12"], await MonthsAsync(db, "todos_archived"));
        await SeedRetentionMonthsAsync(db);
        await SeedFinishedWorkAsync(db, "before");

        // 23:59:50: one pass (no months premade: Archive:Premake=0), then upkeep, then the partition report, each
        // started at ten seconds to midnight.
        await AtTenToMidnightAsync(db);
        var before = await CliAsync("archive", "--once", "--batch-size", "50");
        Assert.True(before.ExitCode == 0, before.Output);
        var december = await ArchivedAsync(db, "todos_archived", "before");
        Assert.Equal((200L, "todos_archived_y2027m12"), december.Place);
        Assert.True(december.Latest < Midnight, $"the pass before midnight archived at {december.Latest:O}: it started more than 10 s late");
        Assert.Equal((50L, "ai_interactions_archived_y2027m12"), (await ArchivedAsync(db, "ai_interactions_archived", "before")).Place);

        await AtTenToMidnightAsync(db);
        var upkeep = await CliAsync("maintain", "--once");
        Assert.True(upkeep.ExitCode == 0, upkeep.Output);
        Assert.Contains("maintain: 2025-11 to cold storage", upkeep.Output); // 24 months before December 2027 is December 2025
        Assert.DoesNotContain("2025-12 to cold storage", upkeep.Output);
        Assert.Equal(["2025-12", "2026-01", "2027-09", "2027-10", "2027-11", "2027-12"], await MonthsAsync(db, "todos_archived"));

        await AtTenToMidnightAsync(db);
        var status = await CliAsync("partitions", "status", "--exact");
        Assert.True(status.ExitCode == 0, status.Output);
        Assert.Contains("2027-12", status.Output);
        Assert.True(await ServerNowAsync(db) < Midnight, "the steps before midnight took more than 10 s");

        // New work finished in November, then midnight passes.
        await SeedFinishedWorkAsync(db, "after");
        var seen = await FakeClock.WaitUntilServerSeesAsync(db, Midnight, Patience);
        log.WriteLine($"the server's clock crossed midnight: {seen:O}");

        // Two archivers at once in the new year: both need January 2028, which nobody made yet.
        var passes = await Task.WhenAll(CliAsync("archive", "--once", "--batch-size", "50"), CliAsync("archive", "--once", "--batch-size", "50"));
        Assert.All(passes, pass => Assert.True(pass.ExitCode == 0, pass.Output));
        var january = await ArchivedAsync(db, "todos_archived", "after");
        Assert.Equal((200L, "todos_archived_y2028m01"), january.Place);
        Assert.True(january.Earliest >= Midnight, $"archived at {january.Earliest:O}");
        Assert.Equal((50L, "ai_interactions_archived_y2028m01"), (await ArchivedAsync(db, "ai_interactions_archived", "after")).Place);

        // Upkeep in the new year: December 2025 is now past retention; January to April 2028 exist (Premake=3).
        var newYearUpkeep = await CliAsync(["maintain", "--once"], ("Archive__Premake", "3"));
        Assert.True(newYearUpkeep.ExitCode == 0, newYearUpkeep.Output);
        Assert.Contains("maintain: 2025-12 to cold storage", newYearUpkeep.Output);
        Assert.DoesNotContain("2026-01 to cold storage", newYearUpkeep.Output);
        foreach (var table in ArchiveMonths.Tables)
        {
            Assert.Equal(["2026-01", "2027-09", "2027-10", "2027-11", "2027-12", "2028-01", "2028-02", "2028-03", "2028-04"], await MonthsAsync(db, table));
        }

        Assert.True(File.Exists(Path.Combine(_cold, "2025-11", "todos_archived.csv.gz")));
        Assert.True(File.Exists(Path.Combine(_cold, "2025-12", "todos_archived.csv.gz")));

        var newYearStatus = await CliAsync("partitions", "status", "--exact");
        Assert.True(newYearStatus.ExitCode == 0, newYearStatus.Output);
        Assert.Contains("2028-01", newYearStatus.Output);
        log.WriteLine(newYearStatus.Output);

        // Every row once: nothing finished is left active, nothing archived twice.
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM todos_active"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM ai_interactions"));
        Assert.Equal(400L, await Sql.ScalarAsync<long>(db, "SELECT count(DISTINCT id) FROM todos_archived WHERE title LIKE 'before%' OR title LIKE 'after%'"));
        Assert.Equal(400L, await Sql.ScalarAsync<long>(db, "SELECT count(*) FROM todos_archived WHERE title LIKE 'before%' OR title LIKE 'after%'"));
    }

    private Task<(int ExitCode, string Output)> CliAsync(params string[] args) => CliAsync(args, []);

    /// <summary>The archiver CLI on the faked clock, against the test's database, cold storage in the test's folder; no months premade unless a setting says so.</summary>
    private async Task<(int ExitCode, string Output)> CliAsync(string[] args, params (string Name, string Value)[] settings)
    {
        (string, string)[] all = [.. _clock.ProcessEnvironment(), ("Archive__Premake", "0"), ("Maintenance__ColdStorageFolder", _cold), .. settings];
        var result = await OperatorCli.RunAsync(args, _db, all);
        log.WriteLine($"[{_clock.Now:HH:mm:ss}] {string.Join(' ', args)} -> exit {result.ExitCode}\n{result.Output.Trim()}");
        return result;
    }

    /// <summary>Sets every faked clock to 23:59:50 on 31 December and waits until the server reads it.</summary>
    private async Task AtTenToMidnightAsync(string db)
    {
        _clock.Set(TenSecondsBefore);
        var seen = await FakeClock.WaitUntilServerSeesAsync(db, TenSecondsBefore.AddSeconds(-1), Patience);
        Assert.True(seen < Midnight, $"the server's clock read {seen:O}");
    }

    private static async Task<DateTimeOffset> ServerNowAsync(string db) =>
        new(DateTime.SpecifyKind(await Sql.ScalarAsync<DateTime>(db + ";Pooling=false", "SELECT now()"), DateTimeKind.Utc));

    /// <summary>The archive months of <paramref name="table"/>, "yyyy-MM", oldest first.</summary>
    private static async Task<List<string>> MonthsAsync(string db, string table)
    {
        await using var dataSource = Npgsql.NpgsqlDataSource.Create(db);
        return [.. (await ArchiveMonths.AttachedAsync(dataSource, table, default)).Select(ArchiveMonths.Format)];
    }

    /// <summary>Where the rows of one batch ("before"/"after") were archived: how many, the one partition holding them, their first and last archived_at.</summary>
    private static async Task<Archived> ArchivedAsync(string db, string table, string batch)
    {
        var filter = table == "todos_archived" ? $"title LIKE '{batch}%'" : $"prompt = '{batch}'";
        await using var connection = await Sql.OpenAsync(db);
        await using var command = new Npgsql.NpgsqlCommand(
            $"SELECT tableoid::regclass::text, count(*), min(archived_at), max(archived_at) FROM {table} WHERE {filter} GROUP BY 1", connection);
        var found = new List<Archived>();
        await using (var reader = await command.ExecuteReaderAsync())
        {
            while (await reader.ReadAsync())
            {
                found.Add(new Archived(reader.GetInt64(1), reader.GetString(0), reader.GetFieldValue<DateTimeOffset>(2), reader.GetFieldValue<DateTimeOffset>(3)));
            }
        }

        Assert.True(found.Count == 1, $"{batch} rows of {table} are in {string.Join(", ", found.Select(f => f.Partition))}");
        return found[0];
    }

    private sealed record Archived(long Rows, string Partition, DateTimeOffset Earliest, DateTimeOffset Latest)
    {
        public (long Rows, string Partition) Place => (Rows, Partition);
    }

    /// <summary>50 users, each with 2 finished roots with a finished subtask (completed in November 2027) and an AI interaction from August.</summary>
    private static async Task SeedFinishedWorkAsync(string db, string batch)
    {
        await Sql.ExecuteAsync(db,
            $"""
            INSERT INTO todos_active (id, user_id, title, status, completed_at, created_at)
            SELECT gen_random_uuid(), md5('{batch}' || u)::uuid, '{batch} root ' || g, 'done', timestamptz '2027-11-01' + make_interval(hours => g), timestamptz '2027-06-01'
              FROM generate_series(1, 50) u, generate_series(1, 2) g;
            INSERT INTO todos_active (id, user_id, parent_todo_id, title, status, completed_at, created_at)
            SELECT gen_random_uuid(), user_id, id, '{batch} subtask', 'done', timestamptz '2027-11-02', timestamptz '2027-06-02'
              FROM todos_active WHERE title LIKE '{batch} root %';
            INSERT INTO ai_interactions (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at)
            SELECT md5('{batch}' || u)::uuid, gen_random_uuid(), gen_random_uuid(), 'generate_subtasks', 'model-1', '{batch}', 'response', 10, 20, 30, timestamptz '2027-08-01'
              FROM generate_series(1, 50) u;
            """);
    }

    /// <summary>Archive months 2025-11, 2025-12 and 2026-01 with rows: retention (24 months) takes the first before midnight and the second after.</summary>
    private static async Task SeedRetentionMonthsAsync(string db) =>
        await Sql.ExecuteAsync(db,
            """
            SELECT todoscale_ensure_archive_months(t, date '2025-11-01', 2)
              FROM unnest(ARRAY['todos_archived', 'ai_interactions_archived']::regclass[]) t;
            INSERT INTO todos_archived (id, user_id, title, status, priority, completed_at, ai_generated, depth, created_at, updated_at, archived_at)
            SELECT gen_random_uuid(), md5((g % 20)::text)::uuid, 'old ' || g, 'done', 3, m - interval '40 days', false, 0, m - interval '90 days', m - interval '40 days', m + make_interval(mins => g)
              FROM unnest(ARRAY[timestamptz '2025-11-01', '2025-12-01', '2026-01-01']) m, generate_series(1, 100) g;
            INSERT INTO ai_interactions_archived (user_id, id, todo_id, kind, model, prompt, response, tokens_in, tokens_out, latency_ms, created_at, archived_at)
            SELECT md5((g % 20)::text)::uuid, gen_random_uuid(), gen_random_uuid(), 'generate_subtasks', 'model-1', 'old', NULL, 1, 2, 3, m - interval '100 days', m + make_interval(mins => g)
              FROM unnest(ARRAY[timestamptz '2025-11-01', '2025-12-01', '2026-01-01']) m, generate_series(1, 20) g;
            """);
}
