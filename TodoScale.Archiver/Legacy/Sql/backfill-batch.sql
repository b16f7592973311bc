-- One backfill batch (LegacyMigration.Backfill.cs), one statement. Placeholders, filled in by the archiver:
-- {columns} the todo columns, {taken} them as TodoScale takes them (V14's rules), {imported_project_name},
-- {filter} the batch's ids, {lock} KEY SHARE (a retry of rejects: SHARE), {retry} true for a retry, {conflict} the ON CONFLICT action.
--
-- One batch, in one statement (its rows locked just before, FOR KEY SHARE; a retry: FOR SHARE). `batch`: its
-- rows of `todos`. `walk`: each row's chain up `todos` (by the primary key) to a root, or to the first row the
-- rules reject on its own values, a parent missing or another user's, a cycle, or Schema:MaxDepth ancestors.
-- `plan`: from where each walk ended, the row's depth (the chain's: the depth column is never read) or the
-- reason it is rejected, by the same rules as todoscale_legacy_take_chain (V14), the trigger's. `nodes`: the rows
-- to copy, the batch's taken rows and the ancestors they need that todos_active does not hold yet, each with
-- its depth (a row todos_active holds already is not written again: the trigger's copy is newer; a retry writes
-- its own rows over their earlier copies). `ancestors`: those ancestors, locked FOR KEY SHARE too; `parents`:
-- the rows of todos_active the copies hang from, locked FOR KEY SHARE as their foreign key would lock them (for
-- the batches that run without row triggers). If one of either was deleted since the walk read it, the batch
-- copies nothing and reports it (`vanished`), to be retried. Then the projects, the copy (parents first), the
-- rejects (recorded, or cleared for the rows taken now) and the count, and the batch reports (read, copied,
-- rejected, vanished). Under session_replication_role = replica no row trigger runs (measured on 2M rows before:
-- 1,800 ms per 10,000 subtasks with todos_active_before_write and the foreign keys' checks, 490 ms without):
-- what they guarantee holds by construction, and check constraints apply either way.
WITH RECURSIVE batch AS MATERIALIZED (
    SELECT {columns} FROM todos WHERE {filter}
), walk AS (
    SELECT t.id AS origin, t.id, t.user_id, t.parent_todo_id, 0 AS hops, ARRAY[t.id] AS path,
           todoscale_legacy_refusal(t.title, t.status) AS refusal, t.title::text AS title, t.status::text AS status
      FROM batch t
    UNION ALL
    SELECT w.origin, p.id, p.user_id, p.parent_todo_id, w.hops + 1, w.path || p.id,
           todoscale_legacy_refusal(p.title, p.status), p.title::text, p.status::text
      FROM walk w JOIN todos p ON p.id = w.parent_todo_id
     WHERE w.refusal IS NULL AND w.hops < todoscale_max_depth() AND p.user_id = w.user_id AND p.id <> ALL (w.path)
), ends AS MATERIALIZED (
    SELECT DISTINCT ON (origin) * FROM walk ORDER BY origin, hops DESC
), outcomes AS MATERIALIZED (
    SELECT e.*,
           CASE WHEN e.refusal IS NOT NULL THEN CASE WHEN e.hops = 0 THEN e.refusal ELSE 'ancestor_refused' END
                WHEN e.parent_todo_id IS NULL THEN NULL
                WHEN e.parent_todo_id = e.origin THEN 'cycle'
                WHEN e.parent_todo_id = ANY (e.path) THEN 'ancestor_cycle'
                WHEN p.id IS NULL THEN CASE WHEN e.hops = 0 THEN 'parent_missing' ELSE 'ancestor_parent_missing' END
                WHEN p.user_id <> e.user_id THEN CASE WHEN e.hops = 0 THEN 'parent_other_user' ELSE 'ancestor_parent_other_user' END
                ELSE 'too_deep' END AS outcome
      FROM ends e
      LEFT JOIN todos p ON p.id = e.parent_todo_id
), plan AS MATERIALIZED (
    SELECT origin, user_id, hops AS depth, path,
           CASE WHEN outcome LIKE 'ancestor%' THEN 'ancestor_rejected' ELSE outcome END AS reason,
           CASE WHEN outcome IN ('parent_missing', 'parent_other_user', 'ancestor_parent_missing', 'ancestor_parent_other_user')
                THEN '23503' ELSE '23514' END AS sqlstate,
           CASE outcome
                WHEN 'ancestor_refused' THEN format('ancestor %s is rejected: %s', id, todoscale_legacy_refusal_message(refusal, title, status))
                WHEN 'too_deep' THEN format('todo %s has more than %s ancestors (Schema:MaxDepth)', origin, todoscale_max_depth())
                WHEN 'cycle' THEN format('todo %s is its own ancestor (its parent chain is a cycle)', origin)
                WHEN 'ancestor_cycle' THEN format('ancestor %s is rejected: its parent chain is a cycle', parent_todo_id)
                WHEN 'parent_missing' THEN format('parent todo %s does not exist', parent_todo_id)
                WHEN 'ancestor_parent_missing' THEN format('ancestor %s is rejected: its parent %s does not exist', id, parent_todo_id)
                WHEN 'parent_other_user' THEN format('parent todo %s belongs to another user', parent_todo_id)
                WHEN 'ancestor_parent_other_user' THEN format('ancestor %s is rejected: its parent %s belongs to another user', id, parent_todo_id)
                ELSE todoscale_legacy_refusal_message(refusal, title, status) END AS message
      FROM outcomes
), nodes AS MATERIALIZED (
    -- From each taken row's path (itself, then its ancestors up to the root), not from a join of plan and walk:
    -- planned as a nested loop over the two CTEs, that join cost more than the rest of the batch.
    SELECT * FROM (
        SELECT DISTINCT ON (n.id) n.id, p.user_id, p.path[n.ord + 1] AS parent_todo_id, n.ord = 1 AS read,
               (p.depth - n.ord + 1)::smallint AS depth
          FROM plan p, unnest(p.path) WITH ORDINALITY AS n(id, ord)
         WHERE p.reason IS NULL
         ORDER BY n.id, n.ord
    ) n
    -- one probe per row (a scalar subquery, evaluated only here, not an anti-join planned as a scan of todos_active)
    WHERE {retry} AND n.read OR (SELECT true FROM todos_active a WHERE a.user_id = n.user_id AND a.id = n.id LIMIT 1) IS NULL
-- Probes by key, one per row (LATERAL): never a join the planner could turn into a scan of a whole table
-- (a hash semi join over todos_active's partitions made a batch's time grow with every row copied).
), ancestors AS MATERIALIZED (
    SELECT t.*, n.depth AS chain_depth FROM (SELECT id, depth FROM nodes WHERE NOT read) n
     CROSS JOIN LATERAL (SELECT {columns} FROM todos WHERE id = n.id FOR {lock}) t
), parents AS MATERIALIZED (
    SELECT a.id FROM (SELECT DISTINCT user_id, parent_todo_id FROM nodes WHERE parent_todo_id NOT IN (SELECT id FROM nodes)) n
     CROSS JOIN LATERAL (SELECT a.id FROM todos_active a WHERE a.user_id = n.user_id AND a.id = n.parent_todo_id FOR KEY SHARE) a
), vanished AS MATERIALIZED (
    SELECT FROM (SELECT id FROM nodes WHERE NOT read EXCEPT SELECT id FROM ancestors) v
    UNION ALL
    SELECT FROM (SELECT parent_todo_id FROM nodes WHERE parent_todo_id NOT IN (SELECT id FROM nodes) EXCEPT SELECT id FROM parents) v
    LIMIT 1
), taken AS MATERIALIZED (
    -- No join of two CTEs (estimated at a row each, planned as nested loops, they cost minutes at 10,000
    -- rows): the batch's own rows by key again (locked before this statement), the ancestors as locked.
    SELECT t.*, n.depth AS chain_depth FROM (SELECT id, depth FROM nodes WHERE read) n
     CROSS JOIN LATERAL (SELECT {columns} FROM todos WHERE id = n.id) t
     WHERE NOT EXISTS (SELECT FROM vanished)
    UNION ALL
    SELECT * FROM ancestors WHERE NOT EXISTS (SELECT FROM vanished)
), used_projects AS MATERIALIZED (
    SELECT p.user_id, p.id FROM (SELECT DISTINCT user_id, project_id FROM taken WHERE project_id IS NOT NULL) u
     CROSS JOIN LATERAL (SELECT p.user_id, p.id FROM projects p WHERE p.user_id = u.user_id AND p.id = u.project_id FOR KEY SHARE) p
), made_projects AS (
    INSERT INTO projects (user_id, id, name)
    SELECT DISTINCT user_id, project_id, {imported_project_name} FROM taken r
     WHERE project_id IS NOT NULL AND (user_id, project_id) NOT IN (SELECT user_id, id FROM used_projects) -- a hashed subplan
    ON CONFLICT DO NOTHING
), copied AS (
    INSERT INTO todos_active ({columns})
    SELECT {taken} FROM taken r ORDER BY r.chain_depth
    ON CONFLICT (user_id, id) {conflict}
    RETURNING 1
), rejected AS (
    INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message, reason)
    SELECT user_id, origin, 'backfill', sqlstate, message, reason FROM plan
     WHERE reason IS NOT NULL AND NOT EXISTS (SELECT FROM vanished)
    ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
        message = EXCLUDED.message, reason = EXCLUDED.reason, at = EXCLUDED.at
), cleared AS (
    DELETE FROM legacy_rejects j USING plan p
     WHERE p.reason IS NULL AND j.user_id = p.user_id AND j.id = p.origin AND NOT EXISTS (SELECT FROM vanished)
), saved AS (
    UPDATE legacy_migration SET backfill_rows = backfill_rows + (SELECT count(*) FROM copied), updated_at = now()
)
SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM copied),
       (SELECT count(*) FROM plan WHERE reason IS NOT NULL), EXISTS (SELECT FROM vanished)
