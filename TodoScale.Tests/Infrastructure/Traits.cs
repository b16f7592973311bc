namespace TodoScale.Tests.Infrastructure;

/// <summary>
/// Test traits a run can filter on; <c>./build.sh test --at ...</c> (the run on a libfaketime clock) leaves out
/// both kinds below with <c>--filter "Needs!=AppHost&amp;Needs!=ServerTimers"</c>.
/// </summary>
public static class Traits
{
    public const string Needs = "Needs";

    /// <summary>Starts the Aspire AppHost, whose orchestrator (dcp, a Go program) reads the real time, not a faked one.</summary>
    public const string AppHost = "AppHost";

    /// <summary>
    /// Needs PostgreSQL's own timers to fire (statement_timeout, lock_timeout, deadlock detection). Under libfaketime
    /// they do not: `SET statement_timeout = '1s'; SELECT pg_sleep(5)` returns after 5 s instead of failing after 1 s.
    /// </summary>
    public const string ServerTimers = "ServerTimers";
}
