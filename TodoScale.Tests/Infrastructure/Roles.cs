using Npgsql;

namespace TodoScale.Tests.Infrastructure;

/// <summary>Connections that act as one of TodoScale's roles (the test server's superuser logs in and takes the role at start).</summary>
internal static class Roles
{
    public const string App = "todoscale_app";
    public const string Archiver = "todoscale_archiver";

    public static string As(string connectionString, string role) =>
        new NpgsqlConnectionStringBuilder(connectionString) { Options = $"-c role={role}" }.ConnectionString;
}
