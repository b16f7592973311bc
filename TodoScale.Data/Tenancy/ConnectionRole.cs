using Npgsql;

namespace TodoScale.Data.Tenancy;

/// <summary>
/// Makes every connection of a data source act as one role (SET ROLE at connect, through the connection's
/// options), whatever the login: the API as todoscale_app (row-level security holds), the archiver as
/// todoscale_archiver (BYPASSRLS). Empty keeps the login role.
/// </summary>
public static class ConnectionRole
{
    public static NpgsqlDataSourceBuilder ActAs(this NpgsqlDataSourceBuilder builder, string? role)
    {
        if (!string.IsNullOrWhiteSpace(role))
        {
            builder.ConnectionStringBuilder.Options = $"{builder.ConnectionStringBuilder.Options} -c role={role}".Trim();
        }

        return builder;
    }
}
