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

/// <summary>Read routing as one API instance sees it.</summary>
/// <param name="ReplicaUp">Whether the last poll found the replica up, in recovery and within the lag limit.</param>
/// <param name="ReplicaLagSeconds">Seconds since the last transaction the replica replayed; null when unknown.</param>
/// <param name="ReplicaBytesBehind">WAL bytes between the primary's position and the replica's replay position.</param>
/// <param name="ReplicaReplayLsn">The replica's replay position (a WAL position such as `0/3A1B2C8`).</param>
/// <param name="ReplicaCheckedAt">When the replica was last polled; null before the first poll.</param>
/// <param name="ReplicaError">Why the last poll failed; null when it did not.</param>
/// <param name="RedisConnected">Whether this instance is connected to Redis.</param>
/// <param name="UsersAwaitingRedis">Users whose last write position has not reached Redis yet (their reads go to the primary meanwhile).</param>
/// <param name="ActivePartitions">How many hash partitions todos_active has (16, 32, 64 after splits).</param>
/// <param name="MaxDepth">How deep subtasks may nest below a top-level todo; null when unlimited.</param>
/// <param name="ServingFrom">Which tables serve todos: `todoscale`, or `todos` (the legacy table, during a migration before its switch).</param>
/// <param name="LegacyPhase">The legacy migration's phase; null when there is none.</param>
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
