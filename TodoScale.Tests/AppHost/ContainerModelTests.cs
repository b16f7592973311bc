using System.Diagnostics;
using Aspire.Hosting;
using Aspire.Hosting.ApplicationModel;
using Aspire.Hosting.Testing;
using TodoScale.AppHost.Infra;
using TodoScale.Testing;

namespace TodoScale.Tests.AppHost;

/// <summary>
/// Container mode's application model as the real AppHost builds it (DistributedApplicationTestingBuilder, nothing
/// started, no engine needed): what each container is handed. The container-mode stack itself runs in
/// ContainerStackTests where an engine answers.
/// </summary>
public sealed class ContainerModelTests : IAsyncLifetime
{
    private readonly string _dataRoot = Directory.CreateTempSubdirectory("todoscale-model-").FullName;

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync()
    {
        Directory.Delete(_dataRoot, recursive: true);
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Every_container_gets_the_pinned_image_and_grafana_only_when_asked()
    {
        var resources = await ModelAsync(["--Infra:Grafana=false"]);
        Assert.Equal("docker.io/library/postgres:15.14", Image(resources, "postgres"));
        Assert.Equal("docker.io/library/postgres:15.14", Image(resources, "todos-replica"));
        Assert.Equal($"docker.io/library/redis:{ContainerInfrastructure.RedisImageTag}", Image(resources, "cache"));
        Assert.Equal($"docker.io/prom/prometheus:{ContainerInfrastructure.PrometheusImageTag}", Image(resources, "prometheus"));
        Assert.Equal($"quay.io/prometheus/alertmanager:{ContainerInfrastructure.AlertmanagerImageTag}", Image(resources, "alertmanager"));
        Assert.Equal($"quay.io/prometheuscommunity/postgres-exporter:{ContainerInfrastructure.PostgresExporterImageTag}", Image(resources, "postgres-exporter"));
        Assert.Equal($"quay.io/prometheuscommunity/postgres-exporter:{ContainerInfrastructure.PostgresExporterImageTag}", Image(resources, "postgres-exporter-replica"));
        Assert.DoesNotContain(resources, r => r.Name == "grafana");

        var withGrafana = await ModelAsync([]);
        Assert.Equal($"docker.io/grafana/grafana:{ContainerInfrastructure.GrafanaImageTag}", Image(withGrafana, "grafana"));
    }

    [Fact]
    public async Task Both_servers_run_with_process_modes_settings_shared_memory_and_the_operators_settings()
    {
        var resources = await ModelAsync(["--Infra:PostgresSettings:work_mem=16MB", "--Infra:MaxSlotWalKeepSize=512MB"]);
        var primary = Single(resources, "postgres");
        var replica = Single(resources, "todos-replica");

        var args = await ArgsAsync(primary);
        foreach (var setting in new[] { "max_connections=200", "max_slot_wal_keep_size=512MB", "work_mem=16MB" })
        {
            var at = args.IndexOf(setting);
            Assert.True(at > 0 && args[at - 1] == "-c", $"the primary is not started with -c {setting}: {string.Join(' ', args)}");
        }

        var environment = await EnvironmentAsync(replica);
        Assert.Equal("max_connections=200 max_wal_senders=10 max_slot_wal_keep_size=512MB wal_compression=lz4 work_mem=16MB", environment["POSTGRES_SETTINGS"]);
        Assert.Equal("postgres", environment["PRIMARY_HOST"]);
        foreach (var server in new[] { primary, replica })
        {
            Assert.Contains($"--shm-size={ContainerInfrastructure.ShmSize}", await RuntimeArgsAsync(server));
        }
    }

    [Fact]
    public async Task On_citus_every_server_is_a_citus_node_and_a_container_of_the_image_forms_the_cluster_by_name()
    {
        var resources = await ModelAsync(["--Infra:Database=citus", "--Infra:CitusWorkers=3"]);
        var citus = $"docker.io/{ContainerInfrastructure.CitusImage}:{ContainerInfrastructure.CitusImageTag}";
        string[] servers = ["postgres", "todos-replica", "citus-worker-1", "citus-worker-2", "citus-worker-3"];
        foreach (var server in servers)
        {
            Assert.Equal(citus, Image(resources, server));
        }

        // The nodes log in to each other with the superuser's password the server keeps (PGPASSWORD), run as process
        // mode's Citus nodes do, and the standby with the coordinator's settings (hot standby needs max_worker_processes
        // at least the primary's).
        foreach (var node in new[] { "postgres", "citus-worker-1" })
        {
            var args = await ArgsAsync(Single(resources, node));
            foreach (var setting in new[] { "wal_level=logical", "citus.node_conninfo=sslmode=disable", "max_worker_processes=32", "max_connections=200" })
            {
                var at = args.IndexOf(setting);
                Assert.True(at > 0 && args[at - 1] == "-c", $"{node} is not started with -c {setting}: {string.Join(' ', args)}");
            }

            Assert.True((await EnvironmentAsync(Single(resources, node))).ContainsKey("PGPASSWORD"), $"{node} has no PGPASSWORD");
        }

        Assert.Contains("wal_level=logical", (await EnvironmentAsync(Single(resources, "todos-replica")))["POSTGRES_SETTINGS"]);
        Assert.Equal("todos", (await EnvironmentAsync(Single(resources, "citus-worker-2")))["POSTGRES_DB"]);

        // citus.sh in a container of the image, given the nodes by their names on the engine's network.
        var cluster = Single(resources, "citus-cluster");
        Assert.Equal(citus, Image(resources, "citus-cluster"));
        var clusterArgs = await ArgsAsync(cluster);
        Assert.Equal("bash", cluster.Entrypoint);
        Assert.Equal(["todos", "postgres:5432", "citus-worker-1:5432", "citus-worker-2:5432", "citus-worker-3:5432"], clusterArgs[3..]);
        Assert.DoesNotContain('\r', clusterArgs[1]);
        Assert.Contains("citus_add_node", clusterArgs[1]);
        // It stays up once the cluster is formed (a container that exits at once races Podman's network connect), so
        // migrate waits for it to be healthy (the coordinator lists the workers), not for it to finish.
        Assert.Equal("1", (await EnvironmentAsync(cluster))["STAY_UP"]);
        Assert.Contains(cluster.Annotations.OfType<HealthCheckAnnotation>(), _ => true);
        var migrateWaits = resources.Single(r => r.Name == "migrate").Annotations.OfType<WaitAnnotation>().Where(w => w.Resource.Name == "citus-cluster").ToList();
        Assert.Equal(WaitType.WaitUntilHealthy, Assert.Single(migrateWaits).WaitType);

        // The volumes named as process mode names its folders.
        var prefix = $"todoscale-{ContainerInfrastructure.StackId(_dataRoot)}-";
        Assert.Equal(
            [.. new[] { "alertmanager", "citus-coordinator", "citus-coordinator-standby", "citus-worker-1", "citus-worker-2", "citus-worker-3", "prometheus" }.Select(v => prefix + v)],
            Volumes(resources));
    }

    [Fact]
    public async Task The_replica_script_is_lf_only_valid_bash_bounded_and_refuses_a_folder_from_another_cluster()
    {
        var replica = Single(await ModelAsync([]), "todos-replica");
        var args = await ArgsAsync(replica);
        Assert.Equal("bash", replica.Entrypoint);
        Assert.Equal("-c", args[0]);
        var script = args[1];
        Assert.DoesNotContain('\r', script);
        Assert.Contains("REPLICA_WAIT_SECONDS", script);
        Assert.Contains("Database system identifier", script);
        Assert.Contains("wal_status", script);

        // bash itself parses it (a CRLF script fails here with `$'\r': command not found` on its first run).
        var file = Path.Combine(_dataRoot, "replica.sh");
        await File.WriteAllTextAsync(file, script);
        var (exit, output) = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("bash", ["-n", file]), TimeSpan.FromMinutes(2));
        Assert.True(exit == 0, output);
    }

    [Fact]
    public async Task A_replica_whose_primary_never_answers_gives_up_with_the_reason_instead_of_waiting_forever()
    {
        var replica = Single(await ModelAsync([]), "todos-replica");
        var script = (await ArgsAsync(replica))[1];
        var file = Path.Combine(_dataRoot, "replica.sh");
        await File.WriteAllTextAsync(file, script);

        // No primary on this port: the script's wait ends after REPLICA_WAIT_SECONDS with the reason, exit 1.
        var start = Stopwatch.StartNew();
        var (exit, output) = await ProcessRunner.RunAsync(ProcessRunner.StartInfo("bash", [file], environment:
        [
            ("PRIMARY_HOST", "127.0.0.1"), ("PRIMARY_PORT", "1"), ("PGPASSWORD", "x"), ("REPLICA_WAIT_SECONDS", "2"),
            ("PATH", Environment.GetEnvironmentVariable("PATH") + ":/usr/lib/postgresql/15/bin"),
        ]), TimeSpan.FromMinutes(2)); // a script that never gives up fails here
        Assert.Equal(1, exit);
        Assert.Contains("did not answer within 2 s", output);
        Assert.True(start.Elapsed < TimeSpan.FromSeconds(60), $"gave up only after {start.Elapsed}");
    }

    [Fact]
    public async Task Prometheus_reaches_the_services_the_way_aspire_connects_containers_to_the_host_never_host_docker_internal()
    {
        var resources = await ModelAsync([]);
        var prometheus = Single(resources, "prometheus");

        // Each service's endpoint is handed to the container (a host dependency Aspire connects it to) ...
        var environment = await EnvironmentAsync(prometheus);
        foreach (var service in new[] { "api", "archiver" })
        {
            Assert.Equal($"{{{service}.bindings.http.host}}:{{{service}.bindings.http.port}}", environment[$"TODOSCALE_SCRAPE_{service.ToUpperInvariant()}"]);
        }

        // ... and the scrape file is made as a container file, where it loads it from.
        var files = prometheus.Annotations.OfType<ContainerFileSystemCallbackAnnotation>().Single();
        Assert.Equal(ContainerInfrastructure.PrometheusConfigDirectory, files.DestinationPath);
        Assert.Contains($"--config.file={ContainerInfrastructure.PrometheusConfigDirectory}/prometheus.yml", await ArgsAsync(prometheus));

        // Nothing any container is handed names host.docker.internal (Docker Engine on Linux and Podman do not resolve it).
        foreach (var container in resources.OfType<ContainerResource>())
        {
            var handed = (await ArgsAsync(container)).Concat((await EnvironmentAsync(container)).Values);
            Assert.DoesNotContain(handed, value => value.Contains("host.docker.internal", StringComparison.Ordinal));
        }
    }

    [Fact]
    public async Task Without_aspires_container_tunnel_the_services_listen_on_every_interface_themselves()
    {
        // Podman before 5.0 cannot run the tunnel (Infra:ContainerTunnel unset picks this there): a container reaches
        // the host at the engine's host name, an address on its bridge, where DCP's loopback proxies are not.
        foreach (var service in new[] { "api", "archiver" })
        {
            var off = (await ModelAsync(["--Infra:ContainerTunnel=false"])).OfType<ProjectResource>().Single(r => r.Name == service)
                .Annotations.OfType<EndpointAnnotation>().Single(e => e.Name == "http");
            Assert.False(off.IsProxied);
            Assert.Equal("0.0.0.0", off.TargetHost);

            var on = (await ModelAsync(["--Infra:ContainerTunnel=true"])).OfType<ProjectResource>().Single(r => r.Name == service)
                .Annotations.OfType<EndpointAnnotation>().Single(e => e.Name == "http");
            Assert.True(on.IsProxied);
            Assert.Equal("localhost", on.TargetHost);
        }
    }

    [Fact]
    public async Task Volumes_are_named_after_the_data_root_so_two_stacks_never_share_a_database()
    {
        var first = await ModelAsync([]);
        var again = await ModelAsync([]);
        var otherRoot = Directory.CreateTempSubdirectory("todoscale-model-other-");
        try
        {
            var other = await ModelAsync([], otherRoot.FullName);

            var volumes = Volumes(first);
            Assert.Equal(4, volumes.Count); // primary, replica, prometheus, alertmanager
            Assert.All(volumes, v => Assert.StartsWith($"todoscale-{ContainerInfrastructure.StackId(_dataRoot)}-", v));
            Assert.Equal(volumes, Volumes(again));
            Assert.Empty(Volumes(other).Intersect(volumes));
        }
        finally
        {
            otherRoot.Delete(recursive: true);
        }
    }

    [Fact]
    public void Every_script_and_sql_file_in_the_repository_has_lf_line_ends_and_gitattributes_keeps_them_so()
    {
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));
        var files = Directory.EnumerateFiles(root, "*", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}bin{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                        && !f.Contains($"{Path.DirectorySeparatorChar}.git{Path.DirectorySeparatorChar}") && !f.Contains($"{Path.DirectorySeparatorChar}.data{Path.DirectorySeparatorChar}"))
            .Where(f => f.EndsWith(".sh", StringComparison.Ordinal) || f.EndsWith(".sql", StringComparison.Ordinal) || Path.GetFileName(f) is "Containerfile" or "build.sh" or "run")
            .ToList();
        Assert.Contains(files, f => f.EndsWith("container-replica.sh", StringComparison.Ordinal));
        Assert.All(files, f => Assert.False(File.ReadAllText(f).Contains('\r'), $"{f} has CR line ends"));

        var attributes = File.ReadAllText(Path.Combine(root, ".gitattributes"));
        foreach (var pattern in new[] { "*.sh text eol=lf", "*.sql text eol=lf", "*.cs text eol=lf" })
        {
            Assert.Contains(pattern, attributes);
        }
    }

    [Fact]
    public void Build_sh_runs_on_macos_bash_3_2_without_gnu_tools()
    {
        // bash 3.2 (macOS) has no ${x,,}, ${x^^}, declare -A, mapfile/readarray, |& or &>>; macOS has no GNU timeout.
        var root = Path.GetFullPath(Path.Combine(AppContext.BaseDirectory, "..", "..", "..", ".."));
        var script = File.ReadAllLines(Path.Combine(root, "build.sh"));
        var bash4 = new System.Text.RegularExpressions.Regex(@"\$\{[A-Za-z_][A-Za-z0-9_]*(,,|\^\^)\}|declare -A|\bmapfile\b|\breadarray\b|\|&|&>>|(^|[;&|(]\s*)timeout\s");
        var offending = script.Select((line, i) => (line, i)).Where(l => !l.line.TrimStart().StartsWith('#') && bash4.IsMatch(l.line)).Select(l => $"{l.i + 1}: {l.line}").ToList();
        Assert.True(offending.Count == 0, string.Join('\n', offending));
    }

    private async Task<List<IResource>> ModelAsync(string[] args, string? dataRoot = null)
    {
        var builder = await DistributedApplicationTestingBuilder.CreateAsync<Projects.TodoScale_AppHost>(
            ["--Infra:Mode=container", .. TestApp.HostSettings, $"--Infra:DataRoot={dataRoot ?? _dataRoot}", .. args]);
        return [.. builder.Resources];
    }

    private static ContainerResource Single(IEnumerable<IResource> resources, string name) =>
        resources.OfType<ContainerResource>().Single(r => r.Name == name);

    private static string Image(IEnumerable<IResource> resources, string name)
    {
        var image = Single(resources, name).Annotations.OfType<ContainerImageAnnotation>().Single();
        return $"{image.Registry}/{image.Image}:{image.Tag}";
    }

    private static List<string> Volumes(IEnumerable<IResource> resources) =>
        [.. resources.OfType<ContainerResource>().SelectMany(r => r.Annotations.OfType<ContainerMountAnnotation>())
            .Where(m => m.Type == ContainerMountType.Volume).Select(m => m.Source!).Order()];

    private static async Task<List<string>> ArgsAsync(IResource resource)
    {
        var args = new List<object>();
        var context = new CommandLineArgsCallbackContext(args, resource, default);
        foreach (var annotation in resource.Annotations.OfType<CommandLineArgsCallbackAnnotation>())
        {
            await annotation.Callback(context);
        }

        return [.. args.Select(Text)];
    }

    private static async Task<List<string>> RuntimeArgsAsync(IResource resource)
    {
        var args = new List<object>();
        var context = new ContainerRuntimeArgsCallbackContext(args, default);
        foreach (var annotation in resource.Annotations.OfType<ContainerRuntimeArgsCallbackAnnotation>())
        {
            await annotation.Callback(context);
        }

        return [.. args.Select(Text)];
    }

    private static async Task<Dictionary<string, string>> EnvironmentAsync(IResource resource)
    {
        var values = new Dictionary<string, object>();
        var context = new EnvironmentCallbackContext(new DistributedApplicationExecutionContext(DistributedApplicationOperation.Publish), resource, values, default);
        foreach (var annotation in resource.Annotations.OfType<EnvironmentCallbackAnnotation>())
        {
            await annotation.Callback(context);
        }

        return values.ToDictionary(v => v.Key, v => Text(v.Value));
    }

    private static string Text(object value) => value switch
    {
        string text => text,
        IManifestExpressionProvider expression => expression.ValueExpression,
        _ => value.ToString() ?? "",
    };
}
