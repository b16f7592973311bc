using Npgsql;
using Polly;
using Polly.Retry;

namespace TodoScale.Archiver.Database;

/// <summary>
/// A unit of the archiver's database work lost a race it can win by running again (a row it meant to move gained
/// a subtask, an ancestor it meant to copy was deleted): the work rolled back and is retried like a lock timeout.
/// </summary>
public abstract class TransientConflictException(string message) : Exception(message);

/// <summary>
/// The archiver's one retry policy (Polly) for database work that gives way instead of waiting: a transaction that
/// met a lock it would have had to wait for (lock_timeout, 55P03), was picked as a deadlock's victim (40P01), lost
/// a serialization check (40001) or a <see cref="TransientConflictException"/> rolls back and runs again after a
/// pause that grows with each attempt (linear, with jitter, up to a cap) on the caller's clock. The last
/// attempt's failure is the caller's error. Each attempt must be a whole transaction of its own.
/// </summary>
public static class TransientRetry
{
    /// <summary>Whether <paramref name="e"/> is a failure another attempt can get past.</summary>
    public static bool IsTransient(Exception e) =>
        e is TransientConflictException
            or PostgresException { SqlState: PostgresErrorCodes.LockNotAvailable or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure };

    /// <summary>
    /// The policy: at most <paramref name="attempts"/> runs, the n-th retry after n x <paramref name="delay"/>
    /// (at most <paramref name="maxDelay"/>), jittered so parallel workers do not retry in step.
    /// </summary>
    public static ResiliencePipeline Create(int attempts, TimeSpan delay, TimeSpan maxDelay, TimeProvider clock)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(attempts, 1);
        if (attempts == 1)
        {
            return ResiliencePipeline.Empty;
        }

        return new ResiliencePipelineBuilder { TimeProvider = clock }
            .AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(IsTransient),
                MaxRetryAttempts = attempts - 1,
                BackoffType = DelayBackoffType.Linear,
                Delay = delay,
                MaxDelay = maxDelay,
                UseJitter = true,
            })
            .Build();
    }
}
