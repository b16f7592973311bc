-- The legacy migration takes the original design's `todos` as real installations have it: every column but id,
-- user_id and title nullable, statuses typed by hand, trees the application never checked (issue 21).
--
-- Every row of `todos` is either taken by the rules below or rejected with a reason into legacy_rejects; the
-- backfill (LegacyMigration), the dual-write trigger, validate and the API's views over `todos` all apply these
-- same functions, so the two sides compare equal exactly when TodoScale holds what the rules make of a row.
--
-- Rules for values (taken):
--   status        trimmed, lower case, runs of spaces/hyphens/underscores as one '_': 'Done', ' todo ', 'In Progress',
--                 'in-progress' are taken as done, todo, in_progress; 'to do' as todo, 'completed' as done,
--                 'canceled' as cancelled. NULL or blank: 'done' when completed_at is set, else 'todo'.
--   priority      NULL: 3 (the design's default); below 1: 1; above 5: 5.
--   completed_at  kept on a done or cancelled todo; missing there: updated_at, else created_at, else the
--                 migration's start. Cleared on an open (todo, in_progress) todo: the status decides.
--   ai_generated  NULL: false.
--   created_at    NULL: updated_at, else completed_at, else the migration's start (legacy_migration.started_at).
--   updated_at    NULL: created_at, else completed_at, else the migration's start.
--   depth         never read: a todo's depth is its parent chain's (0 for a root), whatever the column holds.
-- Rules for rows (rejected, legacy_rejects.reason):
--   blank_title        the title is empty or spaces only (TodoScale refuses it; there is nothing to name the todo by)
--   title_too_long     longer than 500 characters (a text or wider varchar title)
--   unknown_status     a status that is none of the four, by the rule above
--   parent_missing     parent_todo_id names no row of `todos`
--   parent_other_user  the parent belongs to another user
--   cycle              the todo is its own ancestor
--   too_deep           the chain puts it deeper than Schema:MaxDepth (${max_depth})
--   ancestor_rejected  an ancestor is rejected (each row of a rejected subtree has its own entry, naming the ancestor)
--   user_changed       an update moved the row to another user (user_id never changes in TodoScale)
--   refused            anything else TodoScale's tables refuse (sqlstate and message say what)

CREATE FUNCTION todoscale_legacy_status(status text, completed_at timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN status IS NULL OR status ~ '^[[:space:]]*$' THEN CASE WHEN completed_at IS NULL THEN 'todo' ELSE 'done' END
        ELSE CASE regexp_replace(lower(btrim(status, E' \t\r\n\f\v')), '[[:space:]_-]+', '_', 'g')
            WHEN 'todo' THEN 'todo' WHEN 'to_do' THEN 'todo'
            WHEN 'in_progress' THEN 'in_progress'
            WHEN 'done' THEN 'done' WHEN 'completed' THEN 'done'
            WHEN 'cancelled' THEN 'cancelled' WHEN 'canceled' THEN 'cancelled'
        END
    END
$$;

CREATE FUNCTION todoscale_legacy_priority(priority bigint) RETURNS smallint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (CASE WHEN priority IS NULL THEN 3 WHEN priority < 1 THEN 1 WHEN priority > 5 THEN 5 ELSE priority END)::smallint
$$;

CREATE FUNCTION todoscale_legacy_completed_at(
    status text, completed_at timestamptz, created_at timestamptz, updated_at timestamptz, started timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN todoscale_legacy_status(status, completed_at) IN ('done', 'cancelled')
                THEN coalesce(completed_at, updated_at, created_at, started) END
$$;

CREATE FUNCTION todoscale_legacy_created_at(
    completed_at timestamptz, created_at timestamptz, updated_at timestamptz, started timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(created_at, updated_at, completed_at, started)
$$;

CREATE FUNCTION todoscale_legacy_updated_at(
    completed_at timestamptz, created_at timestamptz, updated_at timestamptz, started timestamptz) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(updated_at, created_at, completed_at, started)
$$;

-- Why a row is rejected on its own values (NULL: taken).
CREATE FUNCTION todoscale_legacy_refusal(title text, status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE
        WHEN title IS NULL OR btrim(title) = '' THEN 'blank_title'
        WHEN length(title) > 500 THEN 'title_too_long'
        WHEN todoscale_legacy_status(status, NULL) IS NULL THEN 'unknown_status'
    END
$$;

CREATE FUNCTION todoscale_legacy_refusal_message(reason text, title text, status text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE reason
        WHEN 'blank_title' THEN 'the title is blank'
        WHEN 'title_too_long' THEN format('the title is %s characters long (500 at most)', length(title))
        WHEN 'unknown_status' THEN format('status %L is none of todo, in_progress, done, cancelled', status)
    END
$$;

-- The deepest a todo may be (Schema:MaxDepth when the schema was made).
CREATE FUNCTION todoscale_max_depth() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT ${max_depth} $$;

ALTER TABLE legacy_rejects ADD COLUMN reason text NOT NULL DEFAULT 'refused';

-- The backfill walks `todos` by its primary key (the chain, not the depth column, orders the copy): its position is
-- the last id done, and the (depth, id) index an earlier `legacy start` built is not used any more.
COMMENT ON COLUMN legacy_migration.backfill_depth IS 'unused since V14: the backfill walks todos by id';

-- The parent chain of a legacy row, checked and copied: walks `todos` up from the row's parent to a root and
-- copies the ancestors todos_active does not hold yet, root first, each by the rules (one that todos_active holds
-- stays as it is: whoever wrote it there wrote a newer version); returns the depth the row takes (the chain's
-- length: the depth column is never read). Raises (check_violation or foreign_key_violation, the reason code as the
-- HINT) when the chain is not one TodoScale can hold: a parent missing or another user's, a cycle, more than
-- Schema:MaxDepth ancestors, or an ancestor rejected on its own values; the backfill's walk (LegacyMigration) decides
-- the same way. Each ancestor is read FOR KEY SHARE, so one being deleted is waited for and then not resurrected.
CREATE FUNCTION todoscale_legacy_take_chain(p_user_id uuid, p_id uuid, p_parent_id uuid, p_started timestamptz) RETURNS int
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    chain jsonb[] := '{}';
    seen uuid[] := ARRAY[p_id];
    ancestor record;
    next_id uuid := p_parent_id;
    problem text;
    i int;
BEGIN
    WHILE next_id IS NOT NULL LOOP
        IF next_id = p_id THEN
            RAISE check_violation USING MESSAGE = format('todo %s is its own ancestor (its parent chain is a cycle)', p_id), HINT = 'cycle';
        ELSIF next_id = ANY(seen) THEN
            RAISE check_violation USING HINT = 'ancestor_rejected',
                MESSAGE = format('ancestor %s is rejected: its parent chain is a cycle', next_id);
        END IF;
        SELECT * INTO ancestor FROM todos WHERE id = next_id FOR KEY SHARE;
        IF NOT FOUND OR ancestor.user_id <> p_user_id THEN
            IF next_id = p_parent_id THEN
                RAISE foreign_key_violation USING HINT = CASE WHEN FOUND THEN 'parent_other_user' ELSE 'parent_missing' END,
                    MESSAGE = format(CASE WHEN FOUND THEN 'parent todo %s belongs to another user' ELSE 'parent todo %s does not exist' END, next_id);
            END IF;
            RAISE foreign_key_violation USING HINT = 'ancestor_rejected',
                MESSAGE = format(CASE WHEN FOUND THEN 'ancestor %s is rejected: its parent %s belongs to another user'
                                      ELSE 'ancestor %s is rejected: its parent %s does not exist' END, seen[array_length(seen, 1)], next_id);
        END IF;
        problem := todoscale_legacy_refusal(ancestor.title, ancestor.status);
        IF problem IS NOT NULL THEN
            RAISE check_violation USING HINT = 'ancestor_rejected', MESSAGE = format('ancestor %s is rejected: %s', next_id,
                todoscale_legacy_refusal_message(problem, ancestor.title, ancestor.status));
        END IF;
        IF coalesce(array_length(chain, 1), 0) >= todoscale_max_depth() THEN
            RAISE check_violation USING HINT = 'too_deep',
                MESSAGE = format('todo %s has more than %s ancestors (Schema:MaxDepth)', p_id, todoscale_max_depth());
        END IF;
        chain := chain || to_jsonb(ancestor);
        seen := seen || next_id;
        next_id := ancestor.parent_todo_id;
    END LOOP;

    FOR i IN REVERSE coalesce(array_length(chain, 1), 0) .. 1 LOOP
        CONTINUE WHEN EXISTS (SELECT FROM todos_active a WHERE a.user_id = p_user_id AND a.id = (chain[i] ->> 'id')::uuid);
        PERFORM todoscale_legacy_ensure_project(p_user_id, (chain[i] ->> 'project_id')::uuid);
        INSERT INTO todos_active (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                                  completed_at, ai_generated, depth, created_at, updated_at)
        SELECT r.id, r.user_id, r.parent_todo_id, r.project_id, r.title, r.description,
               todoscale_legacy_status(r.status, r.completed_at), todoscale_legacy_priority(r.priority), r.due_date,
               todoscale_legacy_completed_at(r.status, r.completed_at, r.created_at, r.updated_at, p_started),
               coalesce(r.ai_generated, false), 0,
               todoscale_legacy_created_at(r.completed_at, r.created_at, r.updated_at, p_started),
               todoscale_legacy_updated_at(r.completed_at, r.created_at, r.updated_at, p_started)
          FROM jsonb_to_record(chain[i]) AS r(id uuid, user_id uuid, parent_todo_id uuid, project_id uuid, title text,
               description text, status text, priority bigint, due_date timestamptz, completed_at timestamptz,
               ai_generated boolean, created_at timestamptz, updated_at timestamptz)
        ON CONFLICT (user_id, id) DO NOTHING;
    END LOOP;
    RETURN coalesce(array_length(chain, 1), 0);
END $$;

-- The dual-write trigger (as in V9) taking each write by the rules: a legacy application that keeps writing NULLs,
-- odd statuses and broken trees never fails because TodoScale exists; what the rules reject is recorded with its
-- reason. A deleted row's subtree left behind in `todos` (nothing there cascades) is recorded too: its rows now
-- have a missing parent (todos_active's cascade has removed their copies).
CREATE OR REPLACE FUNCTION todoscale_legacy_forward() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    tenant text := current_setting('app.user_id', true);
    row_user uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.user_id ELSE NEW.user_id END;
    row_id uuid := CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END;
    started timestamptz;
    problem text;
    state text;
    message text;
    hint text;
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
            INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message, reason)
            WITH RECURSIVE orphans AS (
                SELECT t.id, t.user_id, 1 AS level FROM todos t WHERE t.parent_todo_id = OLD.id
                UNION ALL
                SELECT t.id, t.user_id, o.level + 1 FROM todos t JOIN orphans o ON t.parent_todo_id = o.id WHERE o.level < 64)
            SELECT DISTINCT ON (o.id) o.user_id, o.id, 'delete', '23503',
                   CASE WHEN o.level = 1 THEN format('parent todo %s does not exist (deleted)', OLD.id)
                        ELSE format('ancestor %s was deleted', OLD.id) END,
                   CASE WHEN o.level = 1 THEN 'parent_missing' ELSE 'ancestor_rejected' END
              FROM orphans o
             ORDER BY o.id, o.level
            ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
                message = EXCLUDED.message, reason = EXCLUDED.reason, at = EXCLUDED.at;
        ELSE
            IF TG_OP = 'UPDATE' AND OLD.user_id <> NEW.user_id THEN
                RAISE check_violation USING HINT = 'user_changed',
                    MESSAGE = format('todo %s changed user: user_id never changes in TodoScale', NEW.id);
            END IF;
            problem := todoscale_legacy_refusal(NEW.title, NEW.status);
            IF problem IS NOT NULL THEN
                RAISE check_violation USING HINT = problem, MESSAGE = todoscale_legacy_refusal_message(problem, NEW.title, NEW.status);
            END IF;
            IF NEW.created_at IS NULL OR NEW.updated_at IS NULL THEN
                started := (SELECT started_at FROM legacy_migration); -- only a row without either time needs it
            END IF;
            IF NEW.parent_todo_id IS NOT NULL THEN
                PERFORM todoscale_legacy_take_chain(NEW.user_id, NEW.id, NEW.parent_todo_id, started);
            END IF;
            IF NEW.project_id IS NOT NULL THEN
                PERFORM todoscale_legacy_ensure_project(NEW.user_id, NEW.project_id);
            END IF;
            INSERT INTO todos_active (id, user_id, parent_todo_id, project_id, title, description, status, priority, due_date,
                                      completed_at, ai_generated, depth, created_at, updated_at)
            VALUES (NEW.id, NEW.user_id, NEW.parent_todo_id, NEW.project_id, NEW.title, NEW.description,
                    todoscale_legacy_status(NEW.status, NEW.completed_at), todoscale_legacy_priority(NEW.priority), NEW.due_date,
                    todoscale_legacy_completed_at(NEW.status, NEW.completed_at, NEW.created_at, NEW.updated_at, started),
                    coalesce(NEW.ai_generated, false), 0,
                    todoscale_legacy_created_at(NEW.completed_at, NEW.created_at, NEW.updated_at, started),
                    todoscale_legacy_updated_at(NEW.completed_at, NEW.created_at, NEW.updated_at, started))
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
        GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
        INSERT INTO legacy_rejects (user_id, id, operation, sqlstate, message, reason)
        VALUES (row_user, row_id, lower(TG_OP), state, message,
                CASE WHEN hint IN ('blank_title', 'title_too_long', 'unknown_status', 'parent_missing', 'parent_other_user',
                                   'cycle', 'too_deep', 'ancestor_rejected', 'user_changed') THEN hint ELSE 'refused' END)
        ON CONFLICT (user_id, id) DO UPDATE SET operation = EXCLUDED.operation, sqlstate = EXCLUDED.sqlstate,
            message = EXCLUDED.message, reason = EXCLUDED.reason, at = EXCLUDED.at;
    END;
    PERFORM set_config('app.user_id', coalesce(tenant, ''), true);
    PERFORM set_config('todoscale.legacy_sync', 'off', true);
    RETURN NULL;
END $$;

DROP FUNCTION todoscale_legacy_ensure_ancestors(uuid, uuid);
REVOKE ALL ON FUNCTION todoscale_legacy_take_chain(uuid, uuid, uuid, timestamptz) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON legacy_rejects TO todoscale_archiver;
-- `legacy backfill` run again retries the rejected rows, writing each over the copy todos_active kept of it (the
-- version taken before the write that was rejected): as the archiver role.
GRANT UPDATE (parent_todo_id, project_id, title, description, status, priority, due_date, completed_at, ai_generated, depth,
              created_at, updated_at) ON todos_active TO todoscale_archiver;

-- The API's writes through the views over `todos` (as in V13), returning the stored row as the rules take it.
CREATE OR REPLACE FUNCTION todoscale_legacy_serve() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    tenant uuid := nullif(current_setting('app.user_id', true), '')::uuid;
    moved boolean := false;
    stored record;
    started timestamptz;
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
    UPDATE todos t SET depth = c.depth FROM computed c WHERE t.id = c.id AND t.depth IS DISTINCT FROM c.depth;
    PERFORM set_config('todoscale.legacy_sync', 'off', true);
    PERFORM set_config('todoscale.legacy_strict', 'off', true);

    -- Field by field, by the rules (the view's types; a row the legacy application wrote with NULLs reads as TodoScale takes it).
    SELECT t.* INTO stored FROM todos t WHERE t.id = NEW.id;
    started := (SELECT started_at FROM legacy_migration);
    NEW.parent_todo_id := stored.parent_todo_id;
    NEW.project_id := stored.project_id;
    NEW.title := stored.title;
    NEW.description := stored.description;
    NEW.status := todoscale_legacy_status(stored.status, stored.completed_at);
    NEW.priority := todoscale_legacy_priority(stored.priority);
    NEW.due_date := stored.due_date;
    NEW.completed_at := todoscale_legacy_completed_at(stored.status, stored.completed_at, stored.created_at, stored.updated_at, started);
    NEW.ai_generated := coalesce(stored.ai_generated, false);
    NEW.depth := least(greatest(coalesce(stored.depth, 0), 0), 32767);
    NEW.created_at := todoscale_legacy_created_at(stored.completed_at, stored.created_at, stored.updated_at, started);
    NEW.updated_at := todoscale_legacy_updated_at(stored.completed_at, stored.created_at, stored.updated_at, started);
    RETURN NEW;
END $$;
