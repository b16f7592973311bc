using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Npgsql;
using TodoScale.Data.Tenancy;

namespace TodoScale.Archiver.Partitions;

/// <summary>
/// One table scan of a plan: the relation, the node (Seq Scan, Index Scan, ...), the index if one, and whether the
/// relation is empty (no pages: reading it whole costs nothing, e.g. an archive month made ahead).
/// </summary>
public sealed record PlanScan(string Relation, string NodeType, string? Index, bool Empty = false)
{
    public bool UsesIndex => Index is not null;
}

/// <summary>What one plan of the statement does: its scans, the subplans pruned at executor start, and the findings.</summary>
public sealed record PlanReading(string Mode, IReadOnlyList<PlanScan> Scans, int SubplansRemoved, IReadOnlyList<string> Misses, string Pruning);

/// <summary>What a walk of a plan found: scans, subplans removed at executor start, and Citus' task count (0: not a distributed plan).</summary>
internal sealed class PlanWalk
{
    public List<PlanScan> Scans { get; } = [];

    public int Removed { get; set; }

    public int Tasks { get; set; }
}

/// <summary>The doctor's answer for one statement and one user: both plans, the user's partitions, and the verdict.</summary>
public sealed record Diagnosis(
    string Statement, Guid UserId, string Role, IReadOnlyDictionary<string, string> UsersPartitions,
    PlanReading Custom, PlanReading Generic)
{
    /// <summary>True when both plans read only the user's partition of each hash-partitioned table, each through an index.</summary>
    public bool Healthy => Custom.Misses.Count == 0 && Generic.Misses.Count == 0;
}

/// <summary>
/// `partitions doctor`: how PostgreSQL will run one statement for one user. The statement is prepared (parameters:
/// @user_id or $1 is the user, any other parameter the value given for it, else a value of its type: now() for a
/// timestamp, 3 for a number, 'todo' for a status) and explained twice, as the API's
/// prepared statements run: with a custom plan (the values known while planning: pruning at plan time) and with
/// the generic plan (pruning at executor start, "Subplans Removed"). It runs as todoscale_app with the user's
/// app.user_id, as the API does, so row-level security's filter counts too; everything is rolled back. A plan
/// that reads a hash partition other than the user's, or reads a table without an index, is a miss. On Citus the
/// user's "partition" is the user's shard: a plan must be routed to it (Task Count 1), and the remote plan Citus
/// shows is read the same way.
/// </summary>
public sealed partial class QueryDoctor(NpgsqlDataSource owner)
{
    private const string AppRole = "todoscale_app";

    /// <summary>
    /// Explains <paramref name="sql"/> for <paramref name="userId"/>: as todoscale_app under row-level security (the
    /// API's way) with <paramref name="asApp"/>, else as the login (the table owner: the statement's own filters only).
    /// </summary>
    public async Task<Diagnosis> DiagnoseAsync(
        string sql, Guid userId, bool asApp, IReadOnlyDictionary<string, string> given, CancellationToken cancellationToken)
    {
        await using var connection = await owner.OpenConnectionAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var citus = await ScalarAsync<bool>(connection, "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus')", cancellationToken);
        var partitions = citus ? await UsersShardsAsync(connection, userId, cancellationToken) : await UsersPartitionsAsync(connection, userId, cancellationToken);
        var statement = Positional(WithUsersPartitions(sql, partitions), out var names);

        var login = await ScalarAsync<string>(connection, "SELECT current_user::text", cancellationToken);
        if (asApp && !await ScalarAsync<bool>(connection, $"SELECT pg_has_role(current_user, '{AppRole}', 'MEMBER')", cancellationToken))
        {
            throw new QueryDoctorException($"{login} may not act as {AppRole}; run as its owner, or explain as the login with --as owner");
        }

        var role = asApp ? $"{AppRole} (row-level security on)" : $"{login} (no row-level security: the statement's own filters)";
        await ExecuteAsync(connection, $"{(asApp ? $"SET LOCAL ROLE {AppRole}; " : "")}{TenantScope.SetTenantStatement(userId)}", cancellationToken);
        // The user is $1 and a uuid, whatever casts the statement applies to it; the other types are inferred.
        var prepare = $"PREPARE todoscale_doctor{(names.FirstOrDefault() == "user_id" ? "(uuid)" : "")} AS ";
        try
        {
            await ExecuteAsync(connection, prepare + statement, cancellationToken);
        }
        catch (PostgresException ex)
        {
            throw new QueryDoctorException(
                $"PostgreSQL cannot prepare the statement: {ex.MessageText}{(ex.Position > prepare.Length ? $" (at character {ex.Position - prepare.Length} of the statement as prepared: {statement})" : "")}");
        }

        var types = await ScalarAsync<string[]>(connection,
            "SELECT parameter_types::text[] FROM pg_prepared_statements WHERE name = 'todoscale_doctor'", cancellationToken);
        foreach (var name in given.Keys.Where(k => !names.Contains(k)))
        {
            throw new QueryDoctorException($"--param {name}: the statement has no @{name} (its parameters: {(names.Count == 0 ? "none" : string.Join(", ", names.Select(n => "@" + n)))})");
        }

        var values = types.Select((type, i) => names.ElementAtOrDefault(i) is { } name && name != "user_id" && given.TryGetValue(name, out var value)
            ? $"'{value.Replace("'", "''", StringComparison.Ordinal)}'"
            : ValueFor(type, names.ElementAtOrDefault(i), userId)).ToList();
        var execute = values.Count == 0 ? "EXECUTE todoscale_doctor" : $"EXECUTE todoscale_doctor({string.Join(", ", values)})";

        PlanReading custom, generic;
        try
        {
            custom = await ReadAsync(connection, "force_custom_plan", execute, partitions, citus, cancellationToken);
            generic = await ReadAsync(connection, "force_generic_plan", execute, partitions, citus, cancellationToken);
        }
        catch (PostgresException ex) when (ex.SqlState.StartsWith("22", StringComparison.Ordinal) || ex.SqlState.StartsWith("42", StringComparison.Ordinal))
        {
            throw new QueryDoctorException($"PostgreSQL refuses the parameters' values: {ex.MessageText}");
        }
        await transaction.RollbackAsync(cancellationToken);
        return new Diagnosis(sql, userId, role, partitions, custom, generic);
    }

    /// <summary>The user's partition of every hash-partitioned table (parent -> partition), by PostgreSQL's own hash.</summary>
    private static async Task<Dictionary<string, string>> UsersPartitionsAsync(NpgsqlConnection connection, Guid userId, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT p.relname::text, c.relname::text
              FROM pg_partitioned_table pt
              JOIN pg_class p ON p.oid = pt.partrelid
              JOIN pg_inherits i ON i.inhparent = p.oid
              JOIN pg_class c ON c.oid = i.inhrelid
             WHERE pt.partstrat = 'h' AND p.relnamespace = 'public'::regnamespace
               AND satisfies_hash_partition(p.oid,
                     substring(pg_get_expr(c.relpartbound, c.oid) FROM 'modulus (\d+)')::int,
                     substring(pg_get_expr(c.relpartbound, c.oid) FROM 'remainder (\d+)')::int, @user)
            """, connection);
        command.Parameters.AddWithValue("user", userId);
        var partitions = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            partitions[reader.GetString(0)] = reader.GetString(1);
        }

        return partitions;
    }

    private static async Task<PlanReading> ReadAsync(
        NpgsqlConnection connection, string mode, string execute, IReadOnlyDictionary<string, string> partitions, bool citus, CancellationToken cancellationToken)
    {
        await ExecuteAsync(connection, $"SET LOCAL plan_cache_mode = {mode}", cancellationToken);
        string json;
        await ExecuteAsync(connection, "SAVEPOINT todoscale_doctor_plan", cancellationToken);
        try
        {
            json = await ScalarAsync<string>(connection, $"EXPLAIN (FORMAT JSON) {execute}", cancellationToken);
        }
        catch (PostgresException ex) when (citus && ex.SqlState == PostgresErrorCodes.FeatureNotSupported)
        {
            // Citus plans some multi-shard statements with parameters anew at each execution and refuses a forced
            // generic plan of them: no plan of this kind runs, so there is nothing to miss here.
            await ExecuteAsync(connection, "ROLLBACK TO SAVEPOINT todoscale_doctor_plan", cancellationToken);
            return new PlanReading(mode, [], 0, [], $"not made: Citus plans this statement anew at each execution ({ex.MessageText})");
        }

        using var document = JsonDocument.Parse(json);
        var walk = new PlanWalk();
        Walk(document.RootElement[0].GetProperty("Plan"), walk);
        var removed = walk.Removed;

        var relations = walk.Scans.Select(s => s.Relation).Distinct().ToArray();
        var (owners, empty) = citus ? (await ShardOwnersAsync(connection, relations, cancellationToken), new HashSet<string>()) : await CatalogAsync(connection, relations, cancellationToken);
        var scans = walk.Scans.Select(s => s with { Empty = empty.Contains(s.Relation) }).ToList();
        var misses = new List<string>();
        if (walk.Tasks > 1)
        {
            misses.Add($"fans out to {walk.Tasks} shards (Citus Task Count {walk.Tasks}), not to the user's one");
        }

        foreach (var group in scans.Where(s => owners.ContainsKey(s.Relation) && partitions.ContainsKey(owners[s.Relation])).GroupBy(s => owners[s.Relation]))
        {
            var others = group.Select(s => s.Relation).Where(r => r != partitions[group.Key]).Distinct().ToList();
            if (others.Count > 0)
            {
                misses.Add($"reads {others.Count} partition(s) of {group.Key} besides the user's {partitions[group.Key]}: {string.Join(", ", others.Take(4))}{(others.Count > 4 ? ", ..." : "")}");
            }
        }

        var unindexed = scans.Where(s => !s.UsesIndex && !s.Empty).Select(s => $"{s.NodeType} on {s.Relation}").Distinct().ToList();
        if (unindexed.Count > 0)
        {
            misses.Add($"{unindexed.Count} read(s) without an index: {string.Join(", ", unindexed.Take(4))}{(unindexed.Count > 4 ? ", ..." : "")}");
        }

        var hashScans = scans.Where(s => owners.ContainsKey(s.Relation) && partitions.ContainsKey(owners[s.Relation])).ToList();
        var pruning = citus
            ? walk.Tasks == 0 ? "runs on the coordinator (no distributed table read)"
            : walk.Tasks == 1 && !misses.Any(m => m.StartsWith("reads ", StringComparison.Ordinal)) ? "routed to the user's shard (Citus Task Count 1)"
            : $"not routed to the user's shard (Citus Task Count {walk.Tasks})"
            : hashScans.Count == 0 ? "no hash-partitioned table read"
            : misses.Any(m => m.StartsWith("reads ", StringComparison.Ordinal)) ? "not pruned to the user's partition"
            : removed > 0 ? $"pruned at executor start ({removed} subplans removed)"
            : "pruned at plan time";
        return new PlanReading(mode, scans, removed, misses, pruning);
    }

    /// <summary>
    /// Every scan under a plan node, the subplans its Append/MergeAppend nodes removed at executor start, and on
    /// Citus each distributed query's task count, with the scans of the remote plans it shows (shards by name).
    /// </summary>
    private static void Walk(JsonElement node, PlanWalk walk)
    {
        var type = node.GetProperty("Node Type").GetString()!;
        if (node.TryGetProperty("Subplans Removed", out var pruned))
        {
            walk.Removed += pruned.GetInt32();
        }

        if (node.TryGetProperty("Distributed Query", out var distributed) && distributed.TryGetProperty("Job", out var job))
        {
            walk.Tasks += job.GetProperty("Task Count").GetInt32();
            if (job.TryGetProperty("Tasks", out var tasks))
            {
                foreach (var task in tasks.EnumerateArray().Where(t => t.TryGetProperty("Remote Plan", out _)))
                {
                    foreach (var plan in task.GetProperty("Remote Plan").EnumerateArray().SelectMany(p => p.ValueKind == JsonValueKind.Array ? p.EnumerateArray().ToArray() : [p]))
                    {
                        Walk(plan.GetProperty("Plan"), walk);
                    }
                }
            }
        }

        if (type == "Bitmap Heap Scan")
        {
            // The bitmap's index scans are its children; the heap scan reads the relation through them.
            var indexes = node.GetProperty("Plans").EnumerateArray().SelectMany(IndexNames).ToList();
            walk.Scans.Add(new PlanScan(node.GetProperty("Relation Name").GetString()!, type, string.Join(" + ", indexes)));
            return;
        }

        if (node.TryGetProperty("Relation Name", out var relation) && type.EndsWith("Scan", StringComparison.Ordinal))
        {
            walk.Scans.Add(new PlanScan(relation.GetString()!, type, node.TryGetProperty("Index Name", out var index) ? index.GetString() : null));
        }

        if (node.TryGetProperty("Plans", out var children))
        {
            foreach (var child in children.EnumerateArray())
            {
                Walk(child, walk);
            }
        }
    }

    private static IEnumerable<string> IndexNames(JsonElement node) =>
        node.TryGetProperty("Index Name", out var index) ? [index.GetString()!]
        : node.TryGetProperty("Plans", out var children) ? children.EnumerateArray().SelectMany(IndexNames)
        : [];

    /// <summary>On Citus: the user's shard of every hash-distributed table (table -> shard relation, as workers name it).</summary>
    private static async Task<Dictionary<string, string>> UsersShardsAsync(NpgsqlConnection connection, Guid userId, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT logicalrelid::regclass::text, logicalrelid::regclass::text || '_' || get_shard_id_for_distribution_column(logicalrelid, @user)
              FROM pg_dist_partition WHERE partmethod = 'h'
            """, connection);
        command.Parameters.AddWithValue("user", userId);
        var shards = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            shards[reader.GetString(0)] = reader.GetString(1);
        }

        return shards;
    }

    /// <summary>On Citus: the distributed table of each shard relation a remote plan reads.</summary>
    private static async Task<Dictionary<string, string>> ShardOwnersAsync(NpgsqlConnection connection, string[] relations, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT logicalrelid::regclass::text || '_' || shardid, logicalrelid::regclass::text
              FROM pg_dist_shard WHERE logicalrelid::regclass::text || '_' || shardid = ANY (@relations)
            """, connection);
        command.Parameters.AddWithValue("relations", relations);
        var owners = new Dictionary<string, string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            owners[reader.GetString(0)] = reader.GetString(1);
        }

        return owners;
    }

    /// <summary>Each relation's direct parent (for the partitions among them), and the relations with no pages.</summary>
    private static async Task<(Dictionary<string, string> Parents, HashSet<string> Empty)> CatalogAsync(
        NpgsqlConnection connection, string[] relations, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(
            """
            SELECT c.relname::text, p.relname::text, pg_relation_size(c.oid) = 0
              FROM pg_class c LEFT JOIN pg_inherits i ON i.inhrelid = c.oid LEFT JOIN pg_class p ON p.oid = i.inhparent
             WHERE c.relname = ANY (@relations) AND c.relnamespace = 'public'::regnamespace
            """, connection);
        command.Parameters.AddWithValue("relations", relations);
        var parents = new Dictionary<string, string>(StringComparer.Ordinal);
        var empty = new HashSet<string>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            if (!reader.IsDBNull(1))
            {
                parents[reader.GetString(0)] = reader.GetString(1);
            }

            if (reader.GetBoolean(2))
            {
                empty.Add(reader.GetString(0));
            }
        }

        return (parents, empty);
    }

    /// <summary>`todos_active_p@partition` (the archiver's per-partition statements) as the user's partition of that table.</summary>
    private static string WithUsersPartitions(string sql, IReadOnlyDictionary<string, string> partitions) =>
        PartitionPlaceholder().Replace(sql, m => partitions.TryGetValue(m.Groups["table"].Value, out var partition)
            ? partition
            : throw new QueryDoctorException($"{m.Groups["table"].Value} is not a hash-partitioned table here"));

    /// <summary>
    /// @name parameters as $1, $2 ... (@user_id first, the others in order of first use), with each position's name;
    /// a statement written with $1, $2 ... keeps them, $1 being the user.
    /// </summary>
    private static string Positional(string sql, out List<string> names)
    {
        var found = new List<string>();
        if (NamedParameter().Matches(sql).Any(m => m.Groups["name"].Value == "user_id"))
        {
            found.Add("user_id");
        }

        var positional = NamedParameter().Replace(sql, m =>
        {
            var name = m.Groups["name"].Value;
            if (!found.Contains(name))
            {
                found.Add(name);
            }

            return "$" + (found.IndexOf(name) + 1).ToString(CultureInfo.InvariantCulture);
        });
        if (found.Count == 0 && sql.Contains("$1", StringComparison.Ordinal))
        {
            found.Add("user_id");
        }

        names = found;
        return positional;
    }

    /// <summary>A literal for a parameter: the user for @user_id ($1 when written positionally), otherwise a plausible value of its type.</summary>
    private static string ValueFor(string type, string? name, Guid userId)
    {
        var label = name is null ? "a positional parameter" : $"parameter @{name}";
        if (name == "user_id")
        {
            return type == "uuid"
                ? $"'{userId}'"
                : throw new QueryDoctorException($"the user's id ($1 or @user_id) must be a uuid; PostgreSQL reads it as {type}");
        }

        return type switch
        {
            "uuid" => $"'{Guid.NewGuid()}'",
            "timestamp with time zone" or "timestamp without time zone" => "now()",
            "date" => "current_date",
            "smallint" or "integer" or "bigint" or "numeric" => "3",
            "boolean" => "false",
            "text" or "character varying" => name == "status" ? "'todo'" : "'doctor'",
            _ => throw new QueryDoctorException($"{label} is a {type}; the doctor gives values to uuid, timestamps, dates, numbers, booleans and text"),
        };
    }

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync(cancellationToken))!;
    }

    [GeneratedRegex(@"(?<table>\w+)_p@partition\b")]
    private static partial Regex PartitionPlaceholder();

    [GeneratedRegex(@"(?<![\w:@])@(?<name>[A-Za-z_]\w*)")]
    private static partial Regex NamedParameter();
}

/// <summary>A statement the doctor cannot explain (it does not prepare, or a parameter it cannot fill): exit 2.</summary>
public sealed class QueryDoctorException(string message) : Exception(message);
