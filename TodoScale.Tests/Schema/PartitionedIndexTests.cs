using TodoScale.Data.Schema;
using TodoScale.Tests.Infrastructure;

namespace TodoScale.Tests.Schema;

/// <summary>
/// An index added to a partitioned table by a migration is built online: the script creates the parent's ON ONLY,
/// `migrate` builds each partition's concurrently and attaches it, and finishes what an interrupted run left.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class PartitionedIndexTests(PostgresServer server)
{
    private const string AttachedPartitions = """
        SELECT count(*) FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid
         WHERE i.inhparent = '{0}'::regclass AND x.indisvalid AND x.indisready
        """;

    [Fact]
    public async Task The_archivers_roots_index_is_valid_on_every_partition_and_serves_its_batch_without_a_sort()
    {
        var connectionString = await server.FreshMigratedDatabaseAsync("rootsix");
        await using var connection = await Sql.OpenAsync(connectionString);
        Assert.True(await Sql.ScalarAsync<bool>(connection, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'todos_active_archive_roots_ix'::regclass"));
        Assert.Equal(16L, await Sql.ScalarAsync<long>(connection, string.Format(System.Globalization.CultureInfo.InvariantCulture, AttachedPartitions, "todos_active_archive_roots_ix")));

        // The archiver's own statement (TodoArchiver.NextRootsAsync) on one partition: a range of the index, read in
        // order and stopped at the batch; no bitmap scan of every finished todo, no sort.
        await Sql.ExecuteAsync(connection, """
            SET session_replication_role = replica;
            -- Trees of four as users keep them: 40,000 roots, half finished with their three subtasks, half open.
            CREATE TEMP TABLE roots AS
            SELECT gen_random_uuid() AS id, gen_random_uuid() AS user_id, g % 2 = 0 AS done, now() - g * interval '1 minute' AS finished
              FROM generate_series(1, 40000) g;
            INSERT INTO todos_active (id, user_id, title, status, completed_at, depth, created_at, updated_at)
            SELECT id, user_id, 'root', CASE WHEN done THEN 'done' ELSE 'todo' END, CASE WHEN done THEN finished END, 0, now() - interval '90 days', now()
              FROM roots;
            INSERT INTO todos_active (id, user_id, parent_todo_id, title, status, completed_at, depth, created_at, updated_at)
            SELECT gen_random_uuid(), user_id, id, 'subtask', CASE WHEN done THEN 'done' ELSE 'todo' END, CASE WHEN done THEN finished END, 1, now() - interval '90 days', now()
              FROM roots, generate_series(1, 3);
            SET session_replication_role = origin;
            """);
        await Sql.ExecuteAsync(connection, "VACUUM ANALYZE todos_active");
        // An index-only scan is the cheaper plan only over pages marked all-visible, and VACUUM marks a page only once
        // no transaction that may still see its rows' insertion as in progress remains (another test's on this
        // server, say): it runs again until the partition's pages are all marked (CI once planned a bitmap scan and
        // a sort here right after a single VACUUM).
        await Eventually.TrueAsync("todos_active_p03's pages all marked all-visible", async () =>
        {
            await Sql.ExecuteAsync(connection, "VACUUM ANALYZE todos_active_p03");
            return await Sql.ScalarAsync<bool>(connection, "SELECT relallvisible >= relpages FROM pg_class WHERE oid = 'todos_active_p03'::regclass");
        }, TimeSpan.FromMinutes(2));
        var plan = await Sql.ColumnAsync<string>(connection, """
            EXPLAIN (COSTS OFF) SELECT user_id, id, completed_at FROM todos_active_p03
             WHERE status IN ('done', 'cancelled') AND completed_at < now() - interval '1 day' AND parent_todo_id IS NULL
               AND (completed_at, id) > ('-infinity', '00000000-0000-0000-0000-000000000000')
             ORDER BY completed_at, id LIMIT 100
            """);
        Assert.Contains(plan, line => line.Contains("Index Only Scan using todos_active_p03_archive_roots_ix", StringComparison.Ordinal));
        Assert.DoesNotContain(plan, line => line.Contains("Sort", StringComparison.Ordinal) || line.Contains("Bitmap", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Migrate_finishes_an_index_an_interrupted_run_left_half_built()
    {
        var connectionString = await server.FreshMigratedDatabaseAsync("halfbuilt");
        await using var connection = await Sql.OpenAsync(connectionString);
        // A later migration's parent index, as its script leaves it; then what a run stopped midway leaves behind:
        // p01's index built but not attached, p02's left invalid by a failed concurrent build (two rows share a title,
        // so the unique build fails and leaves its index behind, invalid).
        await Sql.ExecuteAsync(connection, """
            SET session_replication_role = replica;
            INSERT INTO todos_active (id, user_id, title, status, depth, created_at, updated_at)
            SELECT gen_random_uuid(), u, 'same', 'todo', 0, now(), now()
              FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, 400)) users, generate_series(1, 2);
            SET session_replication_role = origin;
            CREATE INDEX todos_active_probe_ix ON ONLY todos_active (title, id);
            CREATE INDEX todos_active_p01_probe_ix ON todos_active_p01 (title, id);
            """);
        var failed = await Assert.ThrowsAsync<Npgsql.PostgresException>(() =>
            Sql.ExecuteAsync(connection, "CREATE UNIQUE INDEX CONCURRENTLY todos_active_p02_probe_ix ON todos_active_p02 (title)"));
        Assert.Equal("23505", failed.SqlState);
        Assert.False(await Sql.ScalarAsync<bool>(connection, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'todos_active_p02_probe_ix'::regclass"));
        Assert.False(await Sql.ScalarAsync<bool>(connection, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'todos_active_probe_ix'::regclass"));

        var log = new List<string>();
        var result = await new SchemaMigrator(connectionString, new SchemaOptions(), log.Add).MigrateAsync();

        Assert.Equal(0, result.Applied);
        Assert.Contains(log, line => line.StartsWith("todos_active_probe_ix: 16 partition index(es) built concurrently and attached", StringComparison.Ordinal));
        Assert.True(await Sql.ScalarAsync<bool>(connection, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'todos_active_probe_ix'::regclass"));
        Assert.Equal(16L, await Sql.ScalarAsync<long>(connection, string.Format(System.Globalization.CultureInfo.InvariantCulture, AttachedPartitions, "todos_active_probe_ix")));
        // p02's is the parent's definition now (not the failed unique one), and each partition has exactly one.
        Assert.Equal("CREATE INDEX todos_active_p02_probe_ix ON public.todos_active_p02 USING btree (title, id)",
            await Sql.ScalarAsync<string>(connection, "SELECT pg_get_indexdef('todos_active_p02_probe_ix'::regclass)"));
        Assert.Equal(0L, await Sql.ScalarAsync<long>(connection,
            "SELECT count(*) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid WHERE c.relname LIKE 'todos_active_p%_probe_ix' AND NOT x.indisvalid"));

        // A run with nothing left to build says nothing and changes nothing.
        log.Clear();
        await new SchemaMigrator(connectionString, new SchemaOptions(), log.Add).MigrateAsync();
        Assert.DoesNotContain(log, line => line.Contains("built concurrently", StringComparison.Ordinal));
    }
}
