-- The API serving from `todos` during the migration from it (before `legacy switch`, after `legacy rollback`).
--
-- `legacy start` creates the schema todoscale_legacy with two views named as TodoScale's tables, over `todos`:
-- todos_active (the tenant's todos, every one of them: nothing is archived in `todos`) and todos_archived (none).
-- While the API serves from `todos` it puts that schema first on its search_path (SET LOCAL, per transaction),
-- so the same statements read and write `todos`. Writes to the view go through todoscale_legacy_serve below:
-- they land in `todos`, and the dual-write trigger applies them to the new tables strictly, so a write the new
-- tables refuse fails as it would there (the API's 4xx) and both sides never diverge.

-- The API reads the phase (every poll) to know which side it serves from.
GRANT SELECT ON legacy_migration TO todoscale_app;

-- The dual-write trigger, as in V8, with two changes: a write made by the API through the legacy views
-- (todoscale.legacy_strict = on) fails when the new tables refuse it, instead of being recorded as a reject; and
-- the helpers run only when there is something for them to do (no parent, no project, no reject: the common
-- insert of a root skips three statements).
CREATE OR REPLACE FUNCTION todoscale_legacy_forward() RETURNS trigger
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
            IF NEW.parent_todo_id IS NOT NULL THEN
                PERFORM todoscale_legacy_ensure_ancestors(NEW.user_id, NEW.parent_todo_id);
            END IF;
            IF NEW.project_id IS NOT NULL THEN
                PERFORM todoscale_legacy_ensure_project(NEW.user_id, NEW.project_id);
            END IF;
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
        IF EXISTS (SELECT FROM legacy_rejects) THEN
            DELETE FROM legacy_rejects WHERE user_id = row_user AND id = row_id;
        END IF;
    EXCEPTION WHEN OTHERS THEN
        IF current_setting('todoscale.legacy_strict', true) = 'on' THEN
            RAISE;
        END IF;
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

-- INSTEAD OF INSERT OR UPDATE OR DELETE on todoscale_legacy.todos_active: the API's write, applied to `todos`
-- with TodoScale's rules. The tenant wall as row-level security has it (another user's row is refused); a
-- delete takes the subtree along (as todos_active's cascade does); what the new tables compute (the depth of the
-- row, and of its subtree after a move) is copied back to `todos`, and the row returned (RETURNING) is the
-- stored one.
CREATE FUNCTION todoscale_legacy_serve() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    tenant uuid := nullif(current_setting('app.user_id', true), '')::uuid;
    moved boolean := false;
BEGIN
    IF tenant IS NULL OR (TG_OP <> 'INSERT' AND OLD.user_id <> tenant) OR (TG_OP <> 'DELETE' AND NEW.user_id <> tenant) THEN
        RAISE insufficient_privilege USING MESSAGE = 'new row violates row-level security policy for table "todos"';
    END IF;

    PERFORM set_config('todoscale.legacy_strict', 'on', true);
    IF TG_OP = 'DELETE' THEN
        WITH RECURSIVE subtree AS (
            SELECT OLD.id AS id
            UNION ALL
            SELECT t.id FROM todos t JOIN subtree s ON t.parent_todo_id = s.id WHERE t.user_id = tenant)
        DELETE FROM todos WHERE id IN (SELECT id FROM subtree);
        PERFORM set_config('todoscale.legacy_strict', 'off', true);
        RETURN OLD;
    END IF;

    IF TG_OP = 'INSERT' THEN
        INSERT INTO todos (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                           completed_at, ai_generated, depth, created_at, updated_at)
        VALUES (NEW.id, NEW.user_id, NEW.parent_todo_id, NEW.project_id, NEW.title, NEW.description, coalesce(NEW.status, 'todo'),
                coalesce(NEW.priority, 3), NEW.due_date, NEW.completed_at, coalesce(NEW.ai_generated, false), 0,
                coalesce(NEW.created_at, now()), now());
    ELSE
        IF NEW.id <> OLD.id THEN
            RAISE check_violation USING MESSAGE = 'a todo''s user_id and id never change';
        END IF;
        moved := NEW.parent_todo_id IS DISTINCT FROM OLD.parent_todo_id;
        UPDATE todos SET parent_todo_id = NEW.parent_todo_id, project_id = NEW.project_id, title = NEW.title,
                         description = NEW.description, status = NEW.status, priority = NEW.priority, due_date = NEW.due_date,
                         completed_at = NEW.completed_at, ai_generated = NEW.ai_generated, updated_at = now()
         WHERE id = OLD.id;
    END IF;

    PERFORM set_config('todoscale.legacy_sync', 'on', true);
    WITH RECURSIVE computed AS (
        SELECT a.id, a.depth FROM todos_active a WHERE a.user_id = tenant AND a.id = NEW.id
        UNION ALL
        SELECT a.id, a.depth FROM todos_active a JOIN computed c ON a.user_id = tenant AND a.parent_todo_id = c.id WHERE moved)
    UPDATE todos t SET depth = c.depth FROM computed c WHERE t.id = c.id AND t.depth <> c.depth;
    PERFORM set_config('todoscale.legacy_sync', 'off', true);
    PERFORM set_config('todoscale.legacy_strict', 'off', true);

    SELECT t.id, t.user_id, t.parent_todo_id, t.project_id, t.title, t.description, t.status, t.priority, t.due_date,
           t.completed_at, t.ai_generated, t.depth, t.created_at, t.updated_at
      INTO NEW FROM todos t WHERE t.id = NEW.id;
    RETURN NEW;
END $$;

REVOKE ALL ON FUNCTION todoscale_legacy_serve() FROM PUBLIC;
