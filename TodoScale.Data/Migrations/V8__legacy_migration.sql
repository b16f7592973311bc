-- The online migration from the original design's single table, `todos` (the `legacy` verbs).
--
-- Nothing here touches `todos`: an installation without it gets two empty tables and functions nobody calls.
-- `legacy start` creates the dual-write trigger on `todos` (todoscale_legacy_forward), `legacy switch` the one on
-- todos_active that keeps `todos` current for a rollback (todoscale_legacy_reverse), `legacy finalize` drops both.

-- Where the migration stands: one row, written only by the legacy verbs (as the owner).
CREATE TABLE legacy_migration (
    singleton       boolean     PRIMARY KEY DEFAULT true CHECK (singleton),
    phase           text        NOT NULL
        CHECK (phase IN ('started', 'backfilled', 'validated', 'switched', 'rolled_back', 'finalized')),
    started_at      timestamptz NOT NULL DEFAULT now(),
    -- The backfill's keyset position, (depth, id) of the last row copied, and what it has copied so far.
    backfill_depth  smallint,
    backfill_id     uuid,
    backfill_rows   bigint      NOT NULL DEFAULT 0,
    backfilled_at   timestamptz,
    validated_at    timestamptz,
    switched_at     timestamptz,
    rolled_back_at  timestamptz,
    finalized_at    timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Rows of `todos` the new tables cannot hold as they are (a status or completed_at the new checks refuse, a
-- parent that does not exist, a depth past the limit...): the write to `todos` still succeeds (the legacy
-- application is never failed by the migration), the reason is kept here, `legacy validate` lists the row as a
-- mismatch and `switch` waits until it is fixed at the source (the fixing write clears the entry).
CREATE TABLE legacy_rejects (
    user_id   uuid        NOT NULL,
    id        uuid        NOT NULL,
    operation text        NOT NULL,
    sqlstate  text        NOT NULL,
    message   text        NOT NULL,
    at        timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT legacy_rejects_pkey PRIMARY KEY (user_id, id)
);

-- A legacy row's project, made where TodoScale has none (the original design had no projects table; ids are
-- kept, names are made unique per user).
CREATE FUNCTION todoscale_legacy_ensure_project(p_user_id uuid, p_project_id uuid) RETURNS void
LANGUAGE sql SET search_path = public, pg_catalog AS $$
    INSERT INTO projects (user_id, id, name)
    SELECT p_user_id, p_project_id, 'Imported project ' || p_project_id
     WHERE p_project_id IS NOT NULL
    ON CONFLICT DO NOTHING
$$;

-- Copies the ancestors of a legacy row that todos_active does not have yet (a subtask written before the
-- backfill reached its parent), root first. Each ancestor is read with FOR KEY SHARE, so an ancestor being
-- deleted is waited for and then not resurrected; an ancestor inserted here never overwrites a newer version
-- (ON CONFLICT DO NOTHING: whoever wrote it to todos_active wrote the newer one). A missing ancestor is a
-- foreign key violation, which the caller records as a reject.
CREATE FUNCTION todoscale_legacy_ensure_ancestors(p_user_id uuid, p_parent_id uuid) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    chain jsonb[] := '{}';
    ancestor record;
    next_id uuid := p_parent_id;
    i int;
BEGIN
    WHILE next_id IS NOT NULL LOOP
        EXIT WHEN EXISTS (SELECT FROM todos_active WHERE user_id = p_user_id AND id = next_id);
        SELECT * INTO ancestor FROM todos WHERE id = next_id FOR KEY SHARE;
        IF NOT FOUND OR ancestor.user_id <> p_user_id THEN
            RAISE foreign_key_violation USING MESSAGE = format('parent todo %s does not exist for user %s', next_id, p_user_id);
        END IF;
        IF array_length(chain, 1) > 64 THEN
            RAISE check_violation USING MESSAGE = format('the parents of todo %s form a cycle', p_parent_id);
        END IF;
        chain := chain || to_jsonb(ancestor);
        next_id := ancestor.parent_todo_id;
    END LOOP;

    FOR i IN REVERSE coalesce(array_length(chain, 1), 0) .. 1 LOOP
        PERFORM todoscale_legacy_ensure_project(p_user_id, (chain[i] ->> 'project_id')::uuid);
        INSERT INTO todos_active (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                                  completed_at, ai_generated, depth, created_at, updated_at)
        SELECT id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
               completed_at, ai_generated, depth, created_at, updated_at
          FROM jsonb_populate_record(NULL::todos_active, chain[i])
        ON CONFLICT (user_id, id) DO NOTHING;
    END LOOP;
END $$;

-- The dual-write trigger on `todos` (AFTER INSERT OR UPDATE OR DELETE, FOR EACH ROW): applies the legacy
-- application's write to the new tables in the same transaction. Runs as the owner (SECURITY DEFINER) with the
-- row's user as the tenant, so row-level security holds. A write the new tables refuse is recorded in
-- legacy_rejects instead of failing the legacy application. todoscale.legacy_sync marks writes made by the sync
-- itself, so the reverse trigger does not echo them back.
CREATE FUNCTION todoscale_legacy_forward() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    tenant text := current_setting('app.user_id', true);
    row_user uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
    row_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    state text;
    message text;
BEGIN
    IF current_setting('todoscale.legacy_sync', true) = 'on' THEN
        RETURN NULL;
    END IF;

    PERFORM set_config('todoscale.legacy_sync', 'on', true);
    PERFORM set_config('app.user_id', row_user::text, true);
    BEGIN
        IF TG_OP = 'DELETE' THEN
            DELETE FROM todos_active WHERE user_id = OLD.user_id AND id = OLD.id;
            DELETE FROM todos_archived WHERE user_id = OLD.user_id AND id = OLD.id;
        ELSE
            IF TG_OP = 'UPDATE' AND OLD.user_id <> NEW.user_id THEN
                RAISE check_violation USING MESSAGE = format('todo %s changed user: user_id never changes in TodoScale', NEW.id);
            END IF;
            PERFORM todoscale_legacy_ensure_ancestors(NEW.user_id, NEW.parent_todo_id);
            PERFORM todoscale_legacy_ensure_project(NEW.user_id, NEW.project_id);
            INSERT INTO todos_active (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                                      completed_at, ai_generated, depth, created_at, updated_at)
            VALUES (NEW.id, NEW.user_id, NEW.parent_todo_id, NEW.project_id, NEW.title, NEW.description, NEW.status, NEW.priority,
                    NEW.due_date, NEW.completed_at, NEW.ai_generated, NEW.depth, NEW.created_at, NEW.updated_at)
            ON CONFLICT (user_id, id) DO UPDATE SET
                parent_todo_id = EXCLUDED.parent_todo_id, project_id = EXCLUDED.project_id, title = EXCLUDED.title,
                description = EXCLUDED.description, status = EXCLUDED.status, priority = EXCLUDED.priority,
                due_date = EXCLUDED.due_date, completed_at = EXCLUDED.completed_at, ai_generated = EXCLUDED.ai_generated,
                depth = EXCLUDED.depth, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at;
        END IF;
        DELETE FROM legacy_rejects WHERE user_id = row_user AND id = row_id;
    EXCEPTION WHEN OTHERS THEN
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT;
        INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message)
        VALUES (row_user, row_id, lower(TG_OP), state, message)
        ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
            message = EXCLUDED.message, at = EXCLUDED.at;
    END;
    PERFORM set_config('app.user_id', coalesce(tenant, ''), true);
    PERFORM set_config('todoscale.legacy_sync', 'off', true);
    RETURN NULL;
END $$;

-- The reverse trigger on todos_active (after `legacy switch`): keeps `todos` equal to the new side, so that a
-- rollback is instant and loses nothing. Writes of the sync itself and of the archiver are not echoed (the
-- archiver's moves keep the row in `todos`, where every todo lives).
CREATE FUNCTION todoscale_legacy_reverse() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
    IF current_setting('todoscale.legacy_sync', true) = 'on' OR current_setting('todoscale.archiving', true) = 'on' THEN
        RETURN NULL;
    END IF;

    PERFORM set_config('todoscale.legacy_sync', 'on', true);
    IF TG_OP = 'DELETE' THEN
        DELETE FROM todos WHERE id = OLD.id;
    ELSE
            INSERT INTO todos (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                               completed_at, ai_generated, depth, created_at, updated_at)
            VALUES (NEW.id, NEW.user_id, NEW.parent_todo_id, NEW.project_id, NEW.title, NEW.description, NEW.status, NEW.priority,
                    NEW.due_date, NEW.completed_at, NEW.ai_generated, NEW.depth, NEW.created_at, NEW.updated_at)
            ON CONFLICT (id) DO UPDATE SET
                user_id = EXCLUDED.user_id, parent_todo_id = EXCLUDED.parent_todo_id, project_id = EXCLUDED.project_id,
                title = EXCLUDED.title, description = EXCLUDED.description, status = EXCLUDED.status,
                priority = EXCLUDED.priority, due_date = EXCLUDED.due_date, completed_at = EXCLUDED.completed_at,
                ai_generated = EXCLUDED.ai_generated, depth = EXCLUDED.depth, created_at = EXCLUDED.created_at,
                updated_at = EXCLUDED.updated_at;
    END IF;
    PERFORM set_config('todoscale.legacy_sync', 'off', true);
    RETURN NULL;
END $$;

REVOKE ALL ON FUNCTION todoscale_legacy_forward(), todoscale_legacy_reverse(),
    todoscale_legacy_ensure_ancestors(uuid, uuid), todoscale_legacy_ensure_project(uuid, uuid) FROM PUBLIC;

-- todos_active keeps updated_at itself (now() on every update), except for the sync's writes: a row copied from
-- `todos` keeps the updated_at it has there, so both sides stay equal column for column.
CREATE OR REPLACE FUNCTION todos_active_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    parent_depth smallint;
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
            IF TG_OP = 'UPDATE' AND NEW.parent_todo_id IS DISTINCT FROM OLD.parent_todo_id AND EXISTS (
                WITH RECURSIVE ancestors AS (
                    SELECT t.id, t.parent_todo_id FROM todos_active t
                    WHERE t.user_id = NEW.user_id AND t.id = NEW.parent_todo_id
                    UNION ALL
                    SELECT t.id, t.parent_todo_id FROM todos_active t
                    JOIN ancestors a ON t.user_id = NEW.user_id AND t.id = a.parent_todo_id)
                SELECT FROM ancestors WHERE id = NEW.id)
            THEN
                RAISE EXCEPTION 'todo % cannot move under its own subtask %', NEW.id, NEW.parent_todo_id
                    USING ERRCODE = 'check_violation';
            END IF;
            SELECT t.depth INTO parent_depth FROM todos_active t WHERE t.user_id = NEW.user_id AND t.id = NEW.parent_todo_id;
            IF NOT FOUND THEN
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

-- The backfill and validate read every user's rows and write many users' rows per statement: they run as the
-- archiver role (BYPASSRLS). `legacy start` grants it SELECT on `todos`.
GRANT INSERT ON projects TO todoscale_archiver;
GRANT SELECT, UPDATE ON legacy_migration TO todoscale_archiver;
GRANT SELECT, INSERT, UPDATE, DELETE ON legacy_rejects TO todoscale_archiver;
