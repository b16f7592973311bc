using Microsoft.AspNetCore.Http.HttpResults;
using StackExchange.Redis;
using TodoScale.Api.Caching;
using TodoScale.Api.Extensions;
using TodoScale.Api.Reads;

namespace TodoScale.Api.Apis;

/// <summary>What operators ask the API itself (admin scope): where reads go right now, and why; which tables serve (`legacy switch`).</summary>
public static class OperatorApi
{
    public static IEndpointRouteBuilder MapOperatorApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/admin").WithTags("Operators").RequireAuthorization(Policies.Admin);
        api.MapGet("/reads", GetReadRouting).WithName(nameof(GetReadRouting));
        return app;
    }

    /// <summary>Where reads go right now, and why (operators)</summary>
    /// <remarks>
    /// Needs a token with the `admin` scope (`token --user &lt;uuid&gt; --admin`); any other token gets 403. This API
    /// instance's view of read routing: whether the replica is up, how far behind it is (seconds, bytes, replay
    /// position) and when it was last checked, whether Redis is connected and how many users' last writes wait to
    /// reach it, the number of active partitions, the subtask depth limit, and which tables serve (during a legacy
    /// migration, the phase).
    /// </remarks>
    /// <response code="200">The read routing as this instance sees it.</response>
    public static async Task<Ok<ReadRoutingStatus>> GetReadRouting(
        DatabaseMonitor monitor, IConnectionMultiplexer redis, UserStateStore userState, CancellationToken cancellationToken)
    {
        var replica = monitor.Replica;
        var serving = await monitor.ServingAsync(cancellationToken);
        return TypedResults.Ok(new ReadRoutingStatus(
            ReplicaUp: replica.Up,
            ReplicaLagSeconds: replica.Lag == TimeSpan.MaxValue ? null : replica.Lag.TotalSeconds,
            ReplicaBytesBehind: replica.BytesBehind,
            ReplicaReplayLsn: new NpgsqlTypes.NpgsqlLogSequenceNumber(replica.ReplayLsn).ToString(),
            ReplicaCheckedAt: replica.CheckedAt == DateTimeOffset.MinValue ? null : replica.CheckedAt,
            ReplicaError: replica.Error,
            RedisConnected: redis.IsConnected,
            UsersAwaitingRedis: userState.PendingUsers,
            ActivePartitions: monitor.Schema.ActiveModulus,
            MaxDepth: monitor.Schema.MaxDepth,
            ServingFrom: serving.ToString(),
            LegacyPhase: serving.LegacyPhase));
    }
}

public sealed record ReadRoutingStatus(
    bool ReplicaUp,
    double? ReplicaLagSeconds,
    ulong ReplicaBytesBehind,
    string ReplicaReplayLsn,
    DateTimeOffset? ReplicaCheckedAt,
    string? ReplicaError,
    bool RedisConnected,
    int UsersAwaitingRedis,
    int ActivePartitions,
    int? MaxDepth,
    string ServingFrom,
    string? LegacyPhase);
