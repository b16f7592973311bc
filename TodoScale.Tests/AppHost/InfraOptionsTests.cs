using Aspire.Hosting;
using TodoScale.AppHost.Infra;

namespace TodoScale.Tests.AppHost;

public sealed class InfraOptionsTests
{
    [Theory]
    [InlineData("process", InfraMode.Process)]
    [InlineData("Container", InfraMode.Container)]
    [InlineData("AUTO", InfraMode.Auto)]
    public void Mode_is_read_from_the_command_line_in_any_case(string value, InfraMode expected)
    {
        var builder = DistributedApplication.CreateBuilder([$"--Infra:Mode={value}"]);
        Assert.Equal(expected, InfraOptions.Read(builder).Mode);
    }

    [Fact]
    public void An_unknown_mode_is_refused_with_the_allowed_values()
    {
        var builder = DistributedApplication.CreateBuilder(["--Infra:Mode=kubernetes"]);
        var error = Assert.Throws<InvalidOperationException>(() => InfraOptions.Read(builder));
        Assert.Contains("auto, container or process", error.Message);
        Assert.Contains("kubernetes", error.Message);
    }

    [Theory]
    [InlineData(new[] { "--Infra:Pooler=pgpool" }, "Infra:Pooler must be none or pgbouncer")]
    [InlineData(new[] { "--Infra:Pooler=pgbouncer", "--Infra:PoolerPoolSize=0" }, "Infra:PoolerPoolSize must be from 1 to 500")]
    [InlineData(new[] { "--Infra:Pooler=pgbouncer", "--Infra:Database=citus" }, "runs on PostgreSQL only")]
    public void A_pooler_setting_it_cannot_honour_is_refused_naming_it(string[] args, string message)
    {
        var error = Assert.Throws<InvalidOperationException>(() => InfraOptions.Read(DistributedApplication.CreateBuilder(args)));
        Assert.Contains(message, error.Message);
    }

    [Fact]
    public void The_pooler_is_off_unless_asked_for_and_container_mode_refuses_it()
    {
        Assert.Equal(PoolerKind.None, InfraOptions.Read(DistributedApplication.CreateBuilder([])).Pooler);
        Assert.Equal(PoolerKind.PgBouncer, InfraOptions.Read(DistributedApplication.CreateBuilder(["--Infra:Pooler=PgBouncer"])).Pooler);
        var builder = DistributedApplication.CreateBuilder(["--Infra:Pooler=pgbouncer", "--Infra:Mode=container", $"--Infra:DataRoot={Path.GetTempPath()}"]);
        var error = Assert.Throws<InvalidOperationException>(() => new ContainerInfrastructure(builder, InfraOptions.Read(builder)));
        Assert.Contains("runs in process mode (--Infra:Mode=process)", error.Message);
    }

    [Theory]
    [InlineData("15 minutes")]
    [InlineData("-5s")]
    [InlineData("5")]
    public void A_bad_alert_for_override_is_refused_naming_the_setting(string value)
    {
        var builder = DistributedApplication.CreateBuilder([$"--Infra:AlertFor={value}"]);
        var error = Assert.Throws<InvalidOperationException>(() => InfraOptions.Read(builder));
        Assert.Contains("Infra:AlertFor must be a Prometheus duration", error.Message);
        Assert.Equal("2s", InfraOptions.Read(DistributedApplication.CreateBuilder(["--Infra:AlertFor=2s"])).AlertFor);
        Assert.Null(InfraOptions.Read(DistributedApplication.CreateBuilder([])).AlertFor);
    }

    [Fact]
    public void Postgres_settings_reach_postgres_sh_as_plain_words_and_anything_else_is_refused()
    {
        var options = InfraOptions.Read(DistributedApplication.CreateBuilder(
            ["--Infra:PostgresSettings:shared_buffers=2GB", "--Infra:PostgresSettings:max_wal_size=16GB"]));
        Assert.Equal("max_wal_size=16GB shared_buffers=2GB", options.PostgresSettingsArgument());
        Assert.Equal("", InfraOptions.Read(DistributedApplication.CreateBuilder([])).PostgresSettingsArgument());

        foreach (var bad in new[] { "--Infra:PostgresSettings:work_mem=4MB -c fsync=off", "--Infra:PostgresSettings:work_mem=$(reboot)" })
        {
            var error = Assert.Throws<InvalidOperationException>(() => InfraOptions.Read(DistributedApplication.CreateBuilder([bad])));
            Assert.Contains("Infra:PostgresSettings:work_mem", error.Message);
        }
    }

    [Theory]
    [InlineData("4 GB")]
    [InlineData("lots")]
    [InlineData("4GB; DROP")]
    public void A_bad_slot_wal_limit_is_refused_naming_the_setting(string value)
    {
        var error = Assert.Throws<InvalidOperationException>(() => InfraOptions.Read(DistributedApplication.CreateBuilder([$"--Infra:MaxSlotWalKeepSize={value}"])));
        Assert.Contains("Infra:MaxSlotWalKeepSize", error.Message);
        Assert.Equal("512MB", InfraOptions.Read(DistributedApplication.CreateBuilder(["--Infra:MaxSlotWalKeepSize=512MB"])).MaxSlotWalKeepSize);
        Assert.Equal("4GB", InfraOptions.Read(DistributedApplication.CreateBuilder([])).MaxSlotWalKeepSize);
    }

    [Fact]
    public void Explicit_process_mode_does_not_ask_for_a_container_engine()
    {
        Assert.Equal(InfraMode.Process, new InfraOptions { Mode = InfraMode.Process }.ResolveMode());
    }

    [Fact]
    public void Data_root_defaults_to_dot_data_beside_the_apphost_folder_and_can_be_set()
    {
        var builder = DistributedApplication.CreateBuilder([]);
        var expected = Path.GetFullPath(Path.Combine(builder.AppHostDirectory, "..", ".data"));
        Assert.Equal(expected, InfraOptions.Read(builder).DataRoot);

        var custom = Path.Combine(Path.GetTempPath(), "elsewhere");
        Assert.Equal(custom, InfraOptions.Read(DistributedApplication.CreateBuilder([$"--Infra:DataRoot={custom}"])).DataRoot);
    }

    [Fact]
    [System.Runtime.Versioning.UnsupportedOSPlatform("windows")]
    public void An_engine_answers_when_its_server_names_its_version_as_docker_and_podman_both_do()
    {
        var folder = Directory.CreateTempSubdirectory("todoscale-engines-").FullName;
        try
        {
            // Podman: `info` has no ServerVersion field (its template fails), `version` names the server.
            var podman = Fake(folder, "podman",
                """
                if [ "$1" = info ]; then echo "Error: template: info:1:2: can't evaluate field ServerVersion" >&2; exit 125; fi
                [ "$1 $2 $3" = "version --format {{.Server.Version}}" ] && echo 4.3.1
                """);
            // A Docker client with no daemon: prints nothing for the server and exits 1.
            var docker = Fake(folder, "docker", "echo 'Cannot connect to the Docker daemon' >&2; exit 1");
            var silent = Fake(folder, "silent", "exit 0");

            Assert.True(InfraOptions.EngineAnswers(podman));
            Assert.False(InfraOptions.EngineAnswers(docker));
            Assert.False(InfraOptions.EngineAnswers(silent));
            Assert.False(InfraOptions.EngineAnswers(Path.Combine(folder, "no-such-engine")));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }

        static string Fake(string folder, string name, string body)
        {
            var path = Path.Combine(folder, name);
            File.WriteAllText(path, "#!/bin/sh\n" + body.ReplaceLineEndings("\n") + "\n");
            File.SetUnixFileMode(path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
            return path;
        }
    }

    [Theory]
    [InlineData("podman", "4.3.1", null, false)]  // Debian 12's: the tunnel never starts (measured)
    [InlineData("/usr/bin/podman", "4.9.3", null, false)]
    [InlineData("podman", "5.0.2", null, true)]
    [InlineData("docker", "28.2.2", null, true)]
    [InlineData("podman", "4.3.1", "true", true)] // the setting decides when given
    [InlineData("docker", "28.2.2", "false", false)]
    public void The_container_tunnel_is_used_unless_the_engine_is_a_podman_before_5(string runtime, string version, string? setting, bool expected)
    {
        var options = InfraOptions.Read(DistributedApplication.CreateBuilder(setting is null ? [] : [$"--Infra:ContainerTunnel={setting}"]));
        Assert.Equal(expected, options.UsesContainerTunnel(runtime, version));
    }
}

/// <summary>Process mode's data folders: kept between runs unless Infra:Reset wipes them.</summary>
public sealed class ProcessInfrastructureDataTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("todoscale-infra-").FullName;

    [Fact]
    public void Data_and_generated_secrets_are_kept_between_runs()
    {
        File.WriteAllText(Path.Combine(_root, "marker"), "kept");
        Build(reset: false);
        var password = File.ReadAllText(Path.Combine(_root, "postgres.password"));
        Assert.Equal(32, password.Length);

        Build(reset: false);
        Assert.True(File.Exists(Path.Combine(_root, "marker")));
        Assert.Equal(password, File.ReadAllText(Path.Combine(_root, "postgres.password")));
    }

    [Fact]
    public void Reset_wipes_the_data_folders_and_their_secrets()
    {
        Build(reset: false);
        var password = File.ReadAllText(Path.Combine(_root, "postgres.password"));
        File.WriteAllText(Path.Combine(_root, "marker"), "old");

        Build(reset: true);
        Assert.False(File.Exists(Path.Combine(_root, "marker")));
        Assert.NotEqual(password, File.ReadAllText(Path.Combine(_root, "postgres.password")));
    }

    [Fact]
    public void Backups_archive_the_primarys_wal_unless_switched_off()
    {
        var on = Build(reset: false);
        Assert.NotNull(on.BackupSetup);
        Assert.NotNull(on.BackupConfig);

        var off = Build(reset: false, "--Infra:Backups=false");
        Assert.Null(off.BackupSetup);
        Assert.Null(off.BackupConfig);
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private ProcessInfrastructure Build(bool reset, params string[] args)
    {
        var builder = DistributedApplication.CreateBuilder([$"--Infra:DataRoot={_root}", $"--Infra:Reset={reset}", .. args]);
        return new ProcessInfrastructure(builder, InfraOptions.Read(builder));
    }
}
