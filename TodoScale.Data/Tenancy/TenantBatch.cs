using Npgsql;

namespace TodoScale.Data.Tenancy;

/// <summary>
/// A read that names its tenant and costs one round trip: BEGIN, <c>SET LOCAL app.user_id</c> (and the legacy
/// views' search_path during a migration), the caller's statements, COMMIT, sent as one batch with one Sync.
/// <list type="bullet">
/// <item>An explicit BEGIN rather than the extended protocol's implicit transaction: Citus propagates
/// <c>SET LOCAL</c> to its workers only inside a transaction block (<c>citus.propagate_set_commands = 'local'</c>),
/// and on PostgreSQL outside one it warns. The same batch runs on both engines.</item>
/// <item>COMMIT is always the last statement: what the caller adds goes before it, so the tenant scope ends with
/// the batch. A statement that fails skips the rest up to the Sync; the connection is then in a failed transaction,
/// which Npgsql rolls back before the connection is used again (it does so on its return to the pool, with or
/// without reset on close), so neither the tenant nor the transaction outlives the read.</item>
/// <item>Through PgBouncer in transaction mode the batch is one server transaction on one server connection.</item>
/// </list>
/// </summary>
public sealed class TenantBatch : IAsyncDisposable
{
    private readonly NpgsqlBatch _batch;

    /// <summary>A batch on the open <paramref name="connection"/> (no transaction of its own open on it).</summary>
    public TenantBatch(NpgsqlConnection connection, Guid userId, bool fromLegacy = false)
    {
        _batch = new NpgsqlBatch(connection);
        UserId = userId;
        _batch.BatchCommands.Add(new NpgsqlBatchCommand("BEGIN"));
        foreach (var statement in TenantScope.ScopeStatements(userId, fromLegacy))
        {
            _batch.BatchCommands.Add(new NpgsqlBatchCommand(statement));
        }

        _batch.BatchCommands.Add(new NpgsqlBatchCommand("COMMIT"));
    }

    /// <summary>The tenant the batch is scoped to.</summary>
    public Guid UserId { get; }

    /// <summary>Adds a statement to run in the tenant's transaction, before its COMMIT.</summary>
    public NpgsqlBatchCommand Add(NpgsqlBatchCommand command)
    {
        _batch.BatchCommands.Insert(_batch.BatchCommands.Count - 1, command);
        return command;
    }

    /// <summary>Adds a statement without parameters, before the COMMIT.</summary>
    public NpgsqlBatchCommand Add(string sql) => Add(new NpgsqlBatchCommand(sql));

    /// <summary>Sends the whole batch; the reader is positioned before the first statement that returns rows.</summary>
    public Task<NpgsqlDataReader> ExecuteReaderAsync(CancellationToken cancellationToken = default) =>
        _batch.ExecuteReaderAsync(cancellationToken);

    public ValueTask DisposeAsync() => _batch.DisposeAsync();
}
