namespace TodoScale.Data;

/// <summary>The connection-string names the AppHost gives every service, whatever its infrastructure mode.</summary>
public static class ConnectionNames
{
    /// <summary>The primary: every write and every read that must see the latest commit.</summary>
    public const string Todos = "todos";

    /// <summary>The streaming read replica (hot standby).</summary>
    public const string TodosReplica = "todos-replica";

    /// <summary>Redis.</summary>
    public const string Cache = "cache";
}
