using System.Data;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;
using Npgsql;

namespace TodoScale.Data.Tenancy;

/// <summary>
/// The tenant wall's second half: a transaction that names its tenant. Row-level security on every user table and
/// partition lets a non-bypass role (todoscale_app) see and write only rows whose user_id equals app.user_id, which
/// is set here with SET LOCAL, so it ends with the transaction and never leaks to the next user of a pooled
/// connection. SET takes no bind parameter: the value is formatted from a parsed Guid, never from raw input.
/// SET LOCAL (rather than set_config(..., true)) also works on Citus, where it is propagated to the workers.
/// A transaction that never set it fails closed: the policy raises instead of showing every row.
/// </summary>
public static class TenantScope
{
    /// <summary>
    /// Puts the views over the legacy table `todos` first on the transaction's search_path, so its todos_active and
    /// todos_archived are `todos` (the API during a migration from it, before `legacy switch`).
    /// </summary>
    public const string ServeFromLegacyStatement = $"SET LOCAL search_path = {Legacy.LegacySchema.ServingSearchPath}";

    /// <summary>
    /// Begins a transaction on the context's connection with app.user_id set to <paramref name="userId"/>, on the
    /// legacy table's views when <paramref name="fromLegacy"/>.
    /// </summary>
    public static async Task<IDbContextTransaction> BeginTenantTransactionAsync(
        this DbContext context, Guid userId, CancellationToken cancellationToken = default,
        IsolationLevel isolationLevel = IsolationLevel.ReadCommitted, bool fromLegacy = false)
    {
        var statement = string.Join("; ", ScopeStatements(userId, fromLegacy));
        var transaction = await context.Database.BeginTransactionAsync(isolationLevel, cancellationToken);
        try
        {
            await context.Database.ExecuteSqlRawAsync(statement, cancellationToken);
            return transaction;
        }
        catch
        {
            await transaction.DisposeAsync();
            throw;
        }
    }

    /// <summary>Begins a transaction on an open connection with app.user_id set to <paramref name="userId"/>.</summary>
    public static async Task<NpgsqlTransaction> BeginTenantTransactionAsync(
        this NpgsqlConnection connection, Guid userId, CancellationToken cancellationToken = default,
        IsolationLevel isolationLevel = IsolationLevel.ReadCommitted)
    {
        var statement = SetTenantStatement(userId);
        var transaction = await connection.BeginTransactionAsync(isolationLevel, cancellationToken);
        try
        {
            await using var command = new NpgsqlCommand(statement, connection, transaction);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return transaction;
        }
        catch
        {
            await transaction.DisposeAsync();
            throw;
        }
    }

    /// <summary>What scopes a transaction to one tenant: its SET LOCAL, then, on the legacy table's views, their search_path.</summary>
    public static IEnumerable<string> ScopeStatements(Guid userId, bool fromLegacy)
    {
        yield return SetTenantStatement(userId);
        if (fromLegacy)
        {
            yield return ServeFromLegacyStatement;
        }
    }

    /// <summary>The SET LOCAL statement for one tenant; the empty Guid is nobody and is refused.</summary>
    public static string SetTenantStatement(Guid userId) =>
        userId == Guid.Empty
            ? throw new ArgumentException("The empty uuid is not a tenant.", nameof(userId))
            : $"SET LOCAL app.user_id = '{userId:D}'";
}
