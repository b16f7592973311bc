using System.ComponentModel.DataAnnotations;

namespace TodoScale.Api.Reads;

/// <summary>Where reads go (section <c>Reads</c>).</summary>
public sealed class ReadOptions
{
    public const string Section = "Reads";

    /// <summary>Send reads to the replica at all (when it is up, close enough and past the user's last write).</summary>
    public bool UseReplica { get; set; } = true;

    /// <summary>A replica further behind than this gets no reads.</summary>
    [Range(typeof(TimeSpan), "00:00:00", "01:00:00")]
    public TimeSpan ReplicaLagLimit { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>How often the replica's replay position and lag are read.</summary>
    [Range(typeof(TimeSpan), "00:00:00.010", "00:01:00")]
    public TimeSpan ReplicaPollInterval { get; set; } = TimeSpan.FromMilliseconds(200);

    /// <summary>How long a user's last commit position is remembered (in Redis and in this process).</summary>
    [Range(typeof(TimeSpan), "00:00:01", "1.00:00:00")]
    public TimeSpan WriteLsnTtl { get; set; } = TimeSpan.FromMinutes(10);
}
