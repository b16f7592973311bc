-- The API serving from the original design's `todos` (issue 21). `legacy start` now gives the serving views
-- (todoscale_legacy.todos_active/_archived) TodoScale's column types whatever `todos` has: the original design's
-- table has INTEGER priority and depth and VARCHAR(20) status. V9's INSTEAD OF trigger returned the stored row by
-- `SELECT .. INTO NEW FROM todos`, which keeps todos' types, and PostgreSQL refused it ("returned row structure
-- does not match the structure of the triggering table", seen with the original DDL). It now copies the stored row
-- into NEW field by field, each value taking the view's type. Otherwise as in V9.
CREATE OR REPLACE FUNCTION todoscale_legacy_serve() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    tenant uuid := nullif(current_setting('app.user_id', true), '')::uuid;
    moved boolean := false;
    stored record;
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

    -- Field by field: each value takes the view's type (todos may hold INTEGER priority and depth, VARCHAR status).
    SELECT t.* INTO stored FROM todos t WHERE t.id = NEW.id;
    NEW.parent_todo_id := stored.parent_todo_id;
    NEW.project_id := stored.project_id;
    NEW.title := stored.title;
    NEW.description := stored.description;
    NEW.status := stored.status;
    NEW.priority := stored.priority;
    NEW.due_date := stored.due_date;
    NEW.completed_at := stored.completed_at;
    NEW.ai_generated := stored.ai_generated;
    NEW.depth := stored.depth;
    NEW.created_at := stored.created_at;
    NEW.updated_at := stored.updated_at;
    RETURN NEW;
END $$;
