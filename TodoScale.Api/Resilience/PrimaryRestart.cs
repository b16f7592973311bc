using System.Net.Sockets;
using Npgsql;
using Polly;
using Polly.Retry;

namespace TodoScale.Api.Resilience;

/// <summary>
/// Waits out a restart of the primary (Polly): work that could not get a working connection (refused, reset,
/// "the database system is starting up" or "shutting down") is retried every 250 ms for up to 10 s, the pool's
/// connections to the old server dropped first. Only work that is safe to run again goes through it: a read, or a
/// write's opening (before anything of it was sent); a write whose COMMIT was under way when the primary went is a
/// 503, since nobody can tell whether it committed.
/// </summary>
public static class PrimaryRestart
{
    public static readonly ResiliencePipeline Pipeline = new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            ShouldHandle = new PredicateBuilder().Handle<Exception>(IsConnectionFailure),
            MaxRetryAttempts = 40,
            Delay = TimeSpan.FromMilliseconds(250),
            BackoffType = DelayBackoffType.Constant,
            UseJitter = true,
        })
        .Build();

    /// <summary>Whether <paramref name="e"/> says the server (not the statement) was unavailable.</summary>
    public static bool IsConnectionFailure(Exception e) => e switch
    {
        PostgresException pg => pg.SqlState is PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
            || pg.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException { InnerException: IOException or SocketException or TimeoutException } => true,
        NpgsqlException npgsql => npgsql.IsTransient,
        InvalidOperationException { InnerException: { } inner } => IsConnectionFailure(inner),
        _ => false,
    };

    /// <summary>After a connection failure: the pool's other connections to the same server are as dead; drop them.</summary>
    public static void Forget(System.Data.Common.DbConnection connection, Exception e)
    {
        if (IsConnectionFailure(e) && connection is NpgsqlConnection npgsql)
        {
            NpgsqlConnection.ClearPool(npgsql);
        }
    }
}
