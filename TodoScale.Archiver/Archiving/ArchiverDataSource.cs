using Npgsql;

namespace TodoScale.Archiver.Archiving;

/// <summary>The archiver's connections: the configured login, acting as the archiver role (BYPASSRLS).</summary>
public static class ArchiverDataSource
{
    public static NpgsqlDataSource Create(string connectionString, string role)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        ActAs(builder, role);
        builder.ConnectionStringBuilder.ApplicationName ??= "todoscale-archiver";
        return builder.Build();
    }

    /// <summary>SET ROLE at connect (connection option -c role=...); empty keeps the login role.</summary>
    public static void ActAs(NpgsqlDataSourceBuilder builder, string role)
    {
        if (!string.IsNullOrWhiteSpace(role))
        {
            builder.ConnectionStringBuilder.Options = $"{builder.ConnectionStringBuilder.Options} -c role={role}".Trim();
        }
    }
}
