using System.Collections.Concurrent;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using StackExchange.Redis;
using TodoScale.Api.Reads;
using TodoScale.Api.Telemetry;

namespace TodoScale.Api.Caching;

/// <summary>What the store knows about a user before a read.</summary>
/// <param name="Known">False when Redis could not be asked: another API instance may have written for this user,
/// so only the primary is safe.</param>
/// <param name="LastWriteLsn">The user's last commit position (0: no write within the TTL).</param>
/// <param name="CachedPage">The cached page for the asked key, when it reflects the user's last write.</param>
public readonly record struct UserView(bool Known, ulong LastWriteLsn, string? CachedPage);

/// <summary>
/// Per user, in Redis: the last commit position (<c>todoscale:{u:&lt;id&gt;}:lsn</c>, for read-your-writes routing)
/// and the cached first pages (<c>todoscale:{u:&lt;id&gt;}:pages</c>, a hash of page key -> "asOfLsn|json").
/// <list type="bullet">
/// <item>A write records its position and deletes the user's pages in one script, and the position only ever
/// grows, so two API instances cannot move it backwards.</item>
/// <item>A page is stored with the position it was read at and is served only while that is still the user's
/// last write, so a slow reader cannot put back a page older than a write that already invalidated it.</item>
/// <item>Redis down: reads go to the database (the primary), and writes whose position could not be recorded
/// are remembered here and replayed (position + invalidation) before Redis is used again, so a page cached
/// before the outage is never served after it.</item>
/// </list>
/// The position is also kept in this process, so this instance never needs Redis to read its own writes.
/// </summary>
public sealed partial class UserStateStore(
    IConnectionMultiplexer redis,
    IOptions<ReadOptions> readOptions,
    IOptions<CacheOptions> cacheOptions,
    ApiMetrics metrics,
    ILogger<UserStateStore> logger) : IDisposable
{
    private const string RecordWriteScript =
        """
        local current = tonumber(redis.call('GET', KEYS[1]) or '0')
        if tonumber(ARGV[1]) > current then
          redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
        else
          redis.call('PEXPIRE', KEYS[1], ARGV[2])
        end
        redis.call('DEL', KEYS[2])
        return 1
        """;

    private readonly MemoryCache _local = new(new MemoryCacheOptions { SizeLimit = 1_000_000 });
    private readonly ConcurrentDictionary<Guid, byte> _pending = new();
    private readonly SemaphoreSlim _replay = new(1, 1);
    private volatile bool _overflowed;

    public static RedisKey LsnKey(Guid userId) => $"todoscale:{{u:{userId:N}}}:lsn";

    public static RedisKey PagesKey(Guid userId) => $"todoscale:{{u:{userId:N}}}:pages";

    /// <summary>Users whose last write is not yet recorded in Redis (tests and health).</summary>
    public int PendingUsers => _pending.Count;

    /// <summary>
    /// What is known of the user before a read. With <paramref name="carried"/> (the client's session position,
    /// <see cref="ClientSession"/>) and no cached page to look up, Redis is not asked: the session's position and
    /// this process's memory decide, one round trip fewer.
    /// </summary>
    public async Task<UserView> ReadAsync(Guid userId, string? pageKey, ulong? carried = null)
    {
        var local = Math.Max(_local.TryGetValue(userId, out ulong localLsn) ? localLsn : 0UL, carried ?? 0);
        if (carried is not null && (pageKey is null || !cacheOptions.Value.Enabled))
        {
            return new UserView(true, local, null);
        }

        if (!await ReadyAsync())
        {
            return new UserView(false, local, null);
        }

        try
        {
            var database = redis.GetDatabase();
            var lsnTask = database.StringGetAsync(LsnKey(userId));
            var pageTask = pageKey is not null && cacheOptions.Value.Enabled
                ? database.HashGetAsync(PagesKey(userId), pageKey)
                : Task.FromResult(RedisValue.Null);
            var stored = await lsnTask;
            var page = await pageTask;
            var lastWrite = Math.Max(local, stored.HasValue ? (ulong)stored : 0UL);
            return new UserView(true, lastWrite, CachedPageAsOf(page, lastWrite));
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            LogRedisUnavailable(logger, e.Message);
            return new UserView(false, local, null);
        }
    }

    /// <summary>Records a committed write: the position (kept only if newer) and the end of the user's cached pages.</summary>
    public async Task RecordWriteAsync(Guid userId, ulong lsn)
    {
        var ttl = readOptions.Value.WriteLsnTtl;
        var local = _local.TryGetValue(userId, out ulong current) ? current : 0UL;
        _local.Set(userId, Math.Max(local, lsn), new MemoryCacheEntryOptions { Size = 1, AbsoluteExpirationRelativeToNow = ttl });

        if (await ReadyAsync() && await TryRecordAsync(userId, lsn))
        {
            return;
        }

        if (_pending.Count < cacheOptions.Value.MaxPendingUsers)
        {
            _pending.TryAdd(userId, 0);
        }
        else
        {
            _overflowed = true;
        }
    }

    /// <summary>
    /// Caches a first page read at <paramref name="asOfLsn"/> (the user's last write when the read began), without
    /// waiting for Redis: the response does not need the page stored, a page that never arrives is a later miss, and
    /// one that arrives after a newer write is never served (its position is not the user's last write any more).
    /// This instance's next read of the page is queued behind it on the same connection and so finds it.
    /// </summary>
    public void StorePage(Guid userId, string pageKey, ulong asOfLsn, string json)
    {
        if (!cacheOptions.Value.Enabled || !_pending.IsEmpty || !redis.IsConnected)
        {
            return;
        }

        try
        {
            var database = redis.GetDatabase();
            var key = PagesKey(userId);
            database.HashSet(key, pageKey, $"{asOfLsn}|{json}", flags: CommandFlags.FireAndForget);
            database.KeyExpire(key, cacheOptions.Value.PageTtl, flags: CommandFlags.FireAndForget);
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            LogRedisUnavailable(logger, e.Message);
        }
    }

    private static string? CachedPageAsOf(RedisValue page, ulong lastWrite)
    {
        if (page.IsNullOrEmpty)
        {
            return null;
        }

        var value = (string)page!;
        var bar = value.IndexOf('|');
        return bar > 0 && ulong.TryParse(value.AsSpan(0, bar), out var asOf) && asOf == lastWrite ? value[(bar + 1)..] : null;
    }

    /// <summary>Redis is usable: connected, and every write it missed while it was away has been replayed.</summary>
    private async Task<bool> ReadyAsync()
    {
        if (!redis.IsConnected)
        {
            return false;
        }

        if (_pending.IsEmpty && !_overflowed)
        {
            return true;
        }

        await _replay.WaitAsync();
        try
        {
            if (_overflowed)
            {
                // Too many users to replay one by one: end every cached page (positions stay, they only grow).
                await ForgetAllPagesAsync();
                _overflowed = false;
            }

            foreach (var userId in _pending.Keys)
            {
                var lsn = _local.TryGetValue(userId, out ulong local) ? local : ulong.MaxValue;
                if (!await TryRecordAsync(userId, lsn))
                {
                    return false;
                }

                _pending.TryRemove(userId, out _);
            }

            LogReplayed(logger);
            return true;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            return false;
        }
        finally
        {
            _replay.Release();
        }
    }

    private async Task<bool> TryRecordAsync(Guid userId, ulong lsn)
    {
        try
        {
            await redis.GetDatabase().ScriptEvaluateAsync(
                RecordWriteScript,
                [LsnKey(userId), PagesKey(userId)],
                [lsn.ToString(System.Globalization.CultureInfo.InvariantCulture), (long)readOptions.Value.WriteLsnTtl.TotalMilliseconds]);
            return true;
        }
        catch (Exception e) when (IsRedisFailure(e))
        {
            LogRedisUnavailable(logger, e.Message);
            metrics.CacheUnavailable();
            return false;
        }
    }

    private async Task ForgetAllPagesAsync()
    {
        foreach (var endpoint in redis.GetEndPoints())
        {
            var server = redis.GetServer(endpoint);
            await foreach (var key in server.KeysAsync(pattern: "todoscale:{u:*}:pages", pageSize: 1000))
            {
                await redis.GetDatabase().KeyDeleteAsync(key);
            }
        }
    }

    private static bool IsRedisFailure(Exception e) =>
        e is RedisException or RedisTimeoutException or RedisConnectionException or TimeoutException or ObjectDisposedException;

    public void Dispose()
    {
        _local.Dispose();
        _replay.Dispose();
    }

    [LoggerMessage(LogLevel.Warning, "Redis is unavailable; reads go to the database: {Reason}")]
    private static partial void LogRedisUnavailable(ILogger logger, string reason);

    [LoggerMessage(LogLevel.Information, "Redis is back; the writes it missed are recorded and their users' pages invalidated.")]
    private static partial void LogReplayed(ILogger logger);
}
