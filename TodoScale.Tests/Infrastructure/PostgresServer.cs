using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;
using TodoScale.Data.Schema;
using TodoScale.Testing;

namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// One throwaway PostgreSQL server for a test run, for fast data tests: initdb into a temp folder, a free port,
/// run as the postgres user when root; each test class gets a fresh database. Disposal shuts the server down
/// (fast shutdown, then kill) and removes the folder.
/// </summary>
public sealed class PostgresServer : IAsyncLifetime, IDatabaseEngine
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);
    private readonly ConcurrentDictionary<Type, Lazy<Task<string>>> _databases = new();
    private readonly ConcurrentDictionary<Type, Lazy<Task<string>>> _migrated = new();
    private readonly ConcurrentDictionary<Type, Lazy<Task>> _shared = new();
    private readonly FakeClock? _clock;
    private readonly IReadOnlyList<string> _settings = [];
    private readonly Queue<string> _output = new();
    private Process? _server;

    public PostgresServer()
    {
    }

    /// <summary>A server whose clock (now(), and every timestamp it takes) is <paramref name="clock"/>'s.</summary>
    internal PostgresServer(FakeClock clock) => _clock = clock;

    /// <summary>A server started with more settings (name=value, each passed as -c), e.g. a Citus node's.</summary>
    internal PostgresServer(IReadOnlyList<string> settings) => _settings = settings;

    public string Engine => "postgres";

    public int ActiveUnits => 16;

    public bool ForcesRowSecurity => true;

    public string Directory { get; private set; } = "";

    public int Port { get; private set; }

    public static string BinDirectory { get; } =
        Environment.GetEnvironmentVariable("PG_BINDIR")
        ?? System.IO.Directory.EnumerateDirectories("/usr/lib/postgresql").Order().Select(d => Path.Combine(d, "bin")).LastOrDefault(d => File.Exists(Path.Combine(d, "postgres")))
        ?? throw new InvalidOperationException("No PostgreSQL server under /usr/lib/postgresql: run ./build.sh test, which installs it.");

    /// <summary>A superuser connection string to the given database.</summary>
    public string ConnectionString(string database = "postgres") =>
        new NpgsqlConnectionStringBuilder { Host = "127.0.0.1", Port = Port, Username = "postgres", Database = database, Timeout = 10 }.ConnectionString;

    /// <summary>The fresh database of one test class, created on first use and kept for that class only.</summary>
    public Task<string> DatabaseForAsync(Type testClass) =>
        _databases.GetOrAdd(testClass, type => new Lazy<Task<string>>(() => CreateDatabaseAsync(type.Name))).Value;

    /// <summary>The fresh database of one test class with the full schema applied by the real migrations.</summary>
    public Task<string> MigratedDatabaseForAsync(Type testClass) =>
        _migrated.GetOrAdd(testClass, type => new Lazy<Task<string>>(async () =>
        {
            var connectionString = await CreateDatabaseAsync(type.Name);
            await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync();
            return connectionString;
        })).Value;

    /// <summary>A fresh database of its own, for a test whose work touches every row (an archive pass), migrated.</summary>
    public async Task<string> FreshMigratedDatabaseAsync(string hint)
    {
        var connectionString = await CreateDatabaseAsync(hint);
        await new SchemaMigrator(connectionString, new SchemaOptions(), _ => { }).MigrateAsync();
        return connectionString;
    }

    /// <summary>Something a whole test class shares (e.g. seeded data), made once on first use.</summary>
    public Task<T> SharedForAsync<T>(Type testClass, Func<Task<T>> create) =>
        (Task<T>)_shared.GetOrAdd(testClass, _ => new Lazy<Task>(() => create())).Value;

    public async Task<string> CreateDatabaseAsync(string hint)
    {
        var letters = new string([.. hint.ToLowerInvariant().Where(char.IsAsciiLetterOrDigit).Take(24)]);
        var name = $"t_{letters}_{Guid.NewGuid():N}"; // at most 59 characters: under PostgreSQL's 63
        await using var connection = new NpgsqlConnection(ConnectionString());
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\"", connection);
        await command.ExecuteNonQueryAsync();
        return ConnectionString(name);
    }

    public async Task InitializeAsync()
    {
        Directory = System.IO.Directory.CreateTempSubdirectory("todoscale-pg-").FullName;
        ProcessRunner.MakeTraversable(Directory);
        var data = Path.Combine(Directory, "data");
        if (ProcessRunner.IsRoot)
        {
            await ProcessRunner.RunCheckedAsync(ProcessRunner.StartInfo("chown", ["postgres:postgres", Directory]), TimeSpan.FromSeconds(10));
        }

        await ProcessRunner.RunCheckedAsync(
            ProcessRunner.StartInfo(Path.Combine(BinDirectory, "initdb"),
                ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"], asPostgres: true),
            StartTimeout);

        for (var attempt = 1; ; attempt++)
        {
            Port = FreePort();
            // Durability is not under test here: fsync off keeps schema-heavy tests fast.
            var start = ProcessRunner.StartInfo(Path.Combine(BinDirectory, "postgres"),
            [
                "-D", data, "-p", Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=300",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                .. _settings.SelectMany(setting => new[] { "-c", setting }),
            ], asPostgres: true, _clock?.ServerEnvironment());
            _server = Process.Start(start)!;
            DrainOutput(_server);
            if (await WaitUntilAcceptingAsync(_server))
            {
                return;
            }

            if (attempt == 3)
            {
                string output;
                lock (_output)
                {
                    output = string.Join('\n', _output);
                }

                throw new InvalidOperationException($"the test PostgreSQL server did not start (port {Port}): {output}");
            }
        }
    }

    public async Task DisposeAsync()
    {
        if (_server is { HasExited: false })
        {
            ProcessRunner.Signal(_server.Id, 2); // fast shutdown
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(15));
            try
            {
                await _server.WaitForExitAsync(cts.Token);
            }
            catch (OperationCanceledException)
            {
                _server.Kill(entireProcessTree: true);
            }
        }

        _server?.Dispose();
        if (System.IO.Directory.Exists(Directory))
        {
            System.IO.Directory.Delete(Directory, recursive: true);
        }
    }

    private async Task<bool> WaitUntilAcceptingAsync(Process server)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < StartTimeout)
        {
            if (server.HasExited)
            {
                return false; // e.g. the port was taken between FreePort and bind: try another
            }

            try
            {
                await using var connection = new NpgsqlConnection(ConnectionString() + ";Pooling=false");
                await connection.OpenAsync();
                return true;
            }
            catch (NpgsqlException)
            {
                await Task.Delay(100);
            }
        }

        server.Kill(entireProcessTree: true);
        return false;
    }

    /// <summary>Keeps the server's last lines of output, for the error when it does not start.</summary>
    private void DrainOutput(Process process)
    {
        void Keep(string? line)
        {
            if (line is null)
            {
                return;
            }

            lock (_output)
            {
                _output.Enqueue(line);
                while (_output.Count > 20)
                {
                    _output.Dequeue();
                }
            }
        }

        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresServer>
{
    public const string Name = "postgres";
}
