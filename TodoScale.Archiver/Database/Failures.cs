using Npgsql;

namespace TodoScale.Archiver.Database;

/// <summary>How a failure reads in a summary line, a log entry or audit_log: the SQLSTATE and the server's words when PostgreSQL said no.</summary>
public static class Failures
{
    public static string Describe(Exception e) => e is PostgresException pg ? $"{pg.SqlState}: {pg.MessageText}" : e.Message;
}
