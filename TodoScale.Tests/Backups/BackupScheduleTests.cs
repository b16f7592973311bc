using TodoScale.Archiver.Backups;
using TodoScale.Archiver.Settings;
using TodoScale.Archiver.Worker;

namespace TodoScale.Tests.Backups;

/// <summary>Which backup the worker takes, from what the repository holds (the defaults: a full weekly, a differential daily).</summary>
public sealed class BackupScheduleTests
{
    private static readonly DateTimeOffset Now = new(2031, 5, 14, 9, 30, 0, TimeSpan.Zero);
    private static readonly BackupOptions Defaults = new();

    [Fact]
    public void An_empty_repository_gets_a_full_backup_at_once() =>
        Assert.Equal("full", BackupScheduler.Due(Inventory(), Now, Defaults));

    [Fact]
    public void A_full_a_week_old_is_replaced_by_a_new_full_even_after_a_recent_differential() =>
        Assert.Equal("full", BackupScheduler.Due(Inventory(("full", Now.AddDays(-7)), ("diff", Now.AddHours(-1))), Now, Defaults));

    [Fact]
    public void A_day_after_the_newest_backup_a_differential_is_due() =>
        Assert.Equal("diff", BackupScheduler.Due(Inventory(("full", Now.AddDays(-3)), ("diff", Now.AddDays(-1))), Now, Defaults));

    [Fact]
    public void Within_a_day_of_the_newest_backup_nothing_is_due()
    {
        Assert.Null(BackupScheduler.Due(Inventory(("full", Now.AddDays(-6)), ("diff", Now.AddHours(-23))), Now, Defaults));
        Assert.Null(BackupScheduler.Due(Inventory(("full", Now.AddMinutes(-5))), Now, Defaults));
    }

    [Fact]
    public void The_schedule_settings_are_checked()
    {
        Assert.Empty(Defaults.Errors());
        Assert.Contains(new BackupOptions { DiffEvery = TimeSpan.FromDays(2), FullEvery = TimeSpan.FromDays(1) }.Errors(), e => e.Contains("Backup:DiffEvery", StringComparison.Ordinal));
        Assert.Contains(new BackupOptions { RetentionFull = 0 }.Errors(), e => e.Contains("RetentionFull", StringComparison.Ordinal));
        Assert.Contains(new BackupOptions { Stanza = "todos; rm -rf /" }.Errors(), e => e.Contains("Backup:Stanza", StringComparison.Ordinal));
    }

    private static BackupInventory Inventory(params (string Type, DateTimeOffset Stop)[] backups) =>
        new([.. backups.Select((b, i) => new BackupSet($"b{i}", b.Type, b.Stop.AddMinutes(-2), b.Stop, 1, 1, 1, null, null, null))], null, null, "ok");
}
