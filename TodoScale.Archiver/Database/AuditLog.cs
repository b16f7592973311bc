using System.Text.Json;
using Npgsql;

namespace TodoScale.Archiver.Database;

/// <summary>Appends to audit_log: who (operator, system) did what (archive.pass, cold.export, ...) to which target.</summary>
public static class AuditLog
{
    private static readonly JsonSerializerOptions Json = new(JsonSerializerDefaults.Web) { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static async Task WriteAsync(
        NpgsqlDataSource dataSource, string actorKind, string actor, string action, string? target, object details, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand(
            "INSERT INTO audit_log (actor_kind, actor, action, target, details) VALUES (@kind, @actor, @action, @target, @details::jsonb)");
        command.Parameters.Add(new NpgsqlParameter<string>("kind", actorKind));
        command.Parameters.Add(new NpgsqlParameter<string>("actor", actor));
        command.Parameters.Add(new NpgsqlParameter<string>("action", action));
        command.Parameters.Add(new NpgsqlParameter<string?>("target", target));
        command.Parameters.Add(new NpgsqlParameter<string>("details", JsonSerializer.Serialize(details, Json)));
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The same, for a failure path: a database that just failed may refuse the entry too, which is not a second error.</summary>
    public static async Task TryWriteAsync(
        NpgsqlDataSource dataSource, string actorKind, string actor, string action, string? target, object details)
    {
        try
        {
            await WriteAsync(dataSource, actorKind, actor, action, target, details, CancellationToken.None);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException)
        {
            // Nothing more to do: the caller reports the original failure.
        }
    }

    /// <summary>When <paramref name="action"/> on <paramref name="target"/> was last recorded (needs a role that may read audit_log: the owner).</summary>
    public static async Task<DateTimeOffset?> LastAsync(NpgsqlDataSource dataSource, string action, string target, CancellationToken cancellationToken)
    {
        await using var command = dataSource.CreateCommand("SELECT max(at) FROM audit_log WHERE action = @action AND target = @target");
        command.Parameters.Add(new NpgsqlParameter<string>("action", action));
        command.Parameters.Add(new NpgsqlParameter<string>("target", target));
        return await command.ExecuteScalarAsync(cancellationToken) is DateTime at ? new DateTimeOffset(at, TimeSpan.Zero) : null;
    }
}
