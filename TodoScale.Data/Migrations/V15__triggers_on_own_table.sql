-- Triggers that read and write only the table they fire on (and its co-located sibling), so the same triggers
-- keep the same guarantees on one PostgreSQL and on Citus.
--
-- On Citus a row trigger fires on a shard, on a worker. There a query that names a distributed table
-- (`todos_active`) is a distributed query from inside a query on a shard, which Citus refuses ("cannot execute a
-- distributed query from a query on a shard"). A todo, its parent and its subtasks belong to one user, so they are
-- always in one hash partition here and in one shard of that partition on Citus: the table the trigger fires on
-- (TG_RELID) holds every row the depth, cycle and subtree rules read. The triggers now name TG_RELID (a partition
-- here, a shard there) instead of `todos_active`; what they guarantee is unchanged.
--
-- Deleting a project clears project_id on its todos (the foreign key's ON DELETE SET NULL (project_id) did that):
-- Citus refuses SET NULL on a foreign key that includes the distribution column, so a BEFORE DELETE trigger on
-- projects now does it, on both engines, before the row goes (the row is already locked then, so no todo can be
-- added to the project meanwhile). On PostgreSQL the foreign key keeps its SET NULL action, which then finds
-- nothing to clear (redeclaring it would revalidate every todo under a lock that blocks writes: PostgreSQL 15
-- cannot add a NOT VALID foreign key on a partitioned table); `migrate` on Citus redeclares it as NO ACTION when
-- it distributes the tables (CitusLayout).

-- A trigger now reads and writes the partition it fires on, so the role whose statement fired it needs on the
-- partition what it holds on the parent, column grants included: V10 and V14 granted the archiver UPDATE of some
-- columns of todos_active (the legacy backfill's retry writes over an earlier copy, and the depth trigger then
-- updates the subtree), and V1's helper copied only table grants. It copies column grants too now, for the
-- partitions made from here on (archive months, re-split children), and once below for every existing one.
CREATE OR REPLACE FUNCTION todoscale_secure_partition(parent regclass, part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    grant_row record;
BEGIN
    PERFORM todoscale_secure_tenant_table(part);
    FOR grant_row IN
        SELECT acl.privilege_type, acl.grantee::regrole AS grantee
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) acl
        WHERE c.oid = parent AND acl.grantee <> c.relowner AND acl.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s', grant_row.privilege_type, part, grant_row.grantee);
    END LOOP;
    FOR grant_row IN
        SELECT a.attname, acl.privilege_type, acl.grantee::regrole AS grantee
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN LATERAL aclexplode(a.attacl) acl
        WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
          AND acl.grantee <> c.relowner AND acl.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s (%I) ON %s TO %s', grant_row.privilege_type, grant_row.attname, part, grant_row.grantee);
    END LOOP;
END $$;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT i.inhparent::regclass AS parent, i.inhrelid::regclass AS part
          FROM pg_inherits i
         WHERE i.inhparent IN ('todos_active'::regclass, 'ai_interactions'::regclass, 'todos_archived'::regclass, 'ai_interactions_archived'::regclass)
         ORDER BY 2
    LOOP
        PERFORM todoscale_secure_partition(p.parent, p.part);
    END LOOP;
END $$;

-- The relation co-located with `own` in `target`: `target` itself on PostgreSQL (and on a Citus coordinator), the
-- shard of `target` that holds the same hash range as the shard `own` when `own` is a Citus shard (its name is
-- <table>_<shard id>). Used by triggers to reach a sibling table without a distributed query.
CREATE FUNCTION todoscale_colocated(own regclass, base regclass, target regclass) RETURNS regclass
LANGUAGE plpgsql STABLE SET search_path = public, pg_catalog AS $$
DECLARE
    own_name text := (SELECT relname FROM pg_class WHERE oid = own);
    base_name text := (SELECT relname FROM pg_class WHERE oid = base);
    shard_id bigint;
    sibling regclass;
BEGIN
    IF own = base OR to_regclass('pg_catalog.pg_dist_shard') IS NULL
       OR own_name !~ ('^' || base_name || '_[0-9]+$') THEN
        RETURN target;
    END IF;
    shard_id := substring(own_name FROM '_([0-9]+)$')::bigint;
    EXECUTE $q$
        SELECT shard_name(t.logicalrelid, t.shardid)::regclass
          FROM pg_dist_shard o
          JOIN pg_dist_shard t ON t.logicalrelid = $2 AND t.shardminvalue = o.shardminvalue
         WHERE o.shardid = $1 AND o.logicalrelid = $3$q$
       INTO sibling USING shard_id, target, base;
    IF sibling IS NULL THEN
        RAISE EXCEPTION 'no shard of % is co-located with %', target, own USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN sibling;
END $$;

-- Depth, immutability and updated_at (V2, V8), on the table the trigger fires on.
CREATE OR REPLACE FUNCTION todos_active_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    parent_depth smallint;
    is_cycle boolean;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.user_id <> OLD.user_id OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'a todo''s user_id and id never change' USING ERRCODE = 'check_violation';
        END IF;
        IF current_setting('todoscale.legacy_sync', true) IS DISTINCT FROM 'on' THEN
            NEW.updated_at := now();
        END IF;
    END IF;

    IF TG_OP = 'INSERT' OR NEW.parent_todo_id IS DISTINCT FROM OLD.parent_todo_id OR NEW.depth <> OLD.depth THEN
        IF NEW.parent_todo_id IS NULL THEN
            NEW.depth := 0;
        ELSE
            IF TG_OP = 'UPDATE' AND NEW.parent_todo_id IS DISTINCT FROM OLD.parent_todo_id THEN
                EXECUTE format($q$
                    WITH RECURSIVE ancestors AS (
                        SELECT t.id, t.parent_todo_id FROM %1$s t
                        WHERE t.user_id = $1 AND t.id = $2
                        UNION ALL
                        SELECT t.id, t.parent_todo_id FROM %1$s t
                        JOIN ancestors a ON t.user_id = $1 AND t.id = a.parent_todo_id)
                    SELECT EXISTS (SELECT FROM ancestors WHERE id = $3)$q$, TG_RELID::regclass)
                   INTO is_cycle USING NEW.user_id, NEW.parent_todo_id, NEW.id;
                IF is_cycle THEN
                    RAISE EXCEPTION 'todo % cannot move under its own subtask %', NEW.id, NEW.parent_todo_id
                        USING ERRCODE = 'check_violation';
                END IF;
            END IF;
            EXECUTE format('SELECT t.depth FROM %s t WHERE t.user_id = $1 AND t.id = $2', TG_RELID::regclass)
               INTO parent_depth USING NEW.user_id, NEW.parent_todo_id;
            IF parent_depth IS NULL THEN -- depth is NOT NULL: no row
                -- Also when the parent comes later in the same statement (rows before this one are visible,
                -- rows after it are not): its depth is unknown, and the foreign key would only check at the end.
                RAISE EXCEPTION 'parent todo % does not exist for user %', NEW.parent_todo_id, NEW.user_id
                    USING ERRCODE = 'foreign_key_violation';
            END IF;
            NEW.depth := parent_depth + 1;
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- A todo that moved to another depth takes its subtree along (V2), in the table the trigger fires on.
CREATE OR REPLACE FUNCTION todos_active_after_depth_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    EXECUTE format('UPDATE %s SET depth = $1 + 1 WHERE user_id = $2 AND parent_todo_id = $3', TG_RELID::regclass)
        USING NEW.depth, NEW.user_id, NEW.id;
    RETURN NULL;
END $$;

-- Deleting a project keeps its todos and clears their project_id.
CREATE FUNCTION projects_before_delete() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    EXECUTE format('UPDATE %s SET project_id = NULL WHERE user_id = $1 AND project_id = $2',
                   todoscale_colocated(TG_RELID, 'projects', 'todos_active'))
        USING OLD.user_id, OLD.id;
    RETURN OLD;
END $$;

CREATE TRIGGER projects_before_delete BEFORE DELETE ON projects
    FOR EACH ROW EXECUTE FUNCTION projects_before_delete();

REVOKE EXECUTE ON FUNCTION todoscale_colocated(regclass, regclass, regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION todoscale_colocated(regclass, regclass, regclass) TO todoscale_app, todoscale_archiver;
