using System.ComponentModel.DataAnnotations;
using Npgsql;
using TodoScale.Data.Tenancy;

namespace TodoScale.Api.Reads;

/// <summary>The settings of every API connection, to the primary and the replica alike (section <c>Database</c>).</summary>
public sealed class DatabaseOptions
{
    public const string Section = "Database";

    /// <summary>
    /// The role every API connection acts as (SET ROLE at connect, through the connection's options): a role with
    /// NOBYPASSRLS, so row-level security holds even when the login role is the owner. Empty: the login role as is
    /// (for a login that is itself todoscale_app or a member role without BYPASSRLS).
    /// </summary>
    public string Role { get; set; } = "todoscale_app";

    /// <summary>
    /// Statements Npgsql prepares per connection after 5 uses (Max Auto Prepare), unless the connection string sets
    /// it: the page query then parses once per connection and runs its generic plan. 0 turns it off.
    /// </summary>
    [Range(0, int.MaxValue, ErrorMessage = "Database:MaxAutoPrepare must be 0 (off) or more.")]
    public int MaxAutoPrepare { get; set; } = 32;

    /// <summary>
    /// The primary (`todos`) is reached through a transaction-mode pooler (PgBouncer, --Infra:Pooler=pgbouncer), so
    /// one server connection serves many API connections, one transaction at a time. Its connections then log in as
    /// the role itself (a pooler does not pass the role option, and must not: it would share one server session
    /// between roles), prepare nothing (PgBouncer 1.18 cannot keep a prepared statement on the server connection a
    /// client's next transaction gets) and skip the reset on close (the pooler's server connections outlive them).
    /// The replica is reached directly either way.
    /// </summary>
    public bool Pooled { get; set; }

    /// <summary>
    /// The data source settings every API connection gets: the role, and auto-prepare (neither through the pooler,
    /// <paramref name="pooled"/>: the primary with <see cref="Pooled"/>). A negative <see cref="MaxAutoPrepare"/>
    /// is left out here: the data sources are built before the options are validated at start, and the validation
    /// then stops the API naming the setting.
    /// </summary>
    public NpgsqlDataSourceBuilder Apply(NpgsqlDataSourceBuilder builder, bool pooled = false)
    {
        if (pooled)
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = 0;
            builder.ConnectionStringBuilder.NoResetOnClose = true;
            return builder;
        }

        if (builder.ConnectionStringBuilder.MaxAutoPrepare == 0 && MaxAutoPrepare > 0)
        {
            builder.ConnectionStringBuilder.MaxAutoPrepare = MaxAutoPrepare;
        }

        return builder.ActAs(Role);
    }
}
