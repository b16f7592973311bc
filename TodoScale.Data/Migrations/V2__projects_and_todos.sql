-- Projects, active todos (hash-partitioned by user) and archived todos (range-partitioned by month).
--
-- Rules every table here keeps, so the schema distributes on Citus by user_id without change:
--   * every primary key, unique constraint and foreign key includes user_id (no foreign key crosses users);
--   * one level of partitioning per table;
--   * ids come from the application (UUIDv7), never from a sequence; user_id never changes.
-- Placeholders, replaced by `migrate` when the schema is created (settings Schema:ActivePartitions and
-- Schema:MaxDepth): ${active_partitions} hash partitions, subtasks at most ${max_depth} levels below a root.

CREATE TABLE projects (
    user_id    uuid         NOT NULL,
    id         uuid         NOT NULL,
    name       varchar(200) NOT NULL,
    created_at timestamptz  NOT NULL DEFAULT now(),
    updated_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT projects_pkey PRIMARY KEY (user_id, id),
    -- A user's projects by name (GET /api/projects: ORDER BY name), and no two projects of a user share a name.
    CONSTRAINT projects_user_name_key UNIQUE (user_id, name),
    CONSTRAINT projects_name_check CHECK (btrim(name) <> '')
);

CREATE TABLE todos_active (
    id             uuid         NOT NULL,
    user_id        uuid         NOT NULL,
    parent_todo_id uuid,
    project_id     uuid,
    title          varchar(500) NOT NULL,
    description    text,
    status         text         NOT NULL DEFAULT 'todo',
    priority       smallint     NOT NULL DEFAULT 3,
    due_date       timestamptz,
    completed_at   timestamptz,
    ai_generated   boolean      NOT NULL DEFAULT false,
    depth          smallint     NOT NULL DEFAULT 0,
    created_at     timestamptz  NOT NULL DEFAULT now(),
    updated_at     timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT todos_active_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT todos_active_parent_fkey FOREIGN KEY (user_id, parent_todo_id)
        REFERENCES todos_active (user_id, id) ON DELETE CASCADE,
    -- Deleting a project keeps its todos and clears only their project_id (user_id is part of the key).
    CONSTRAINT todos_active_project_fkey FOREIGN KEY (user_id, project_id)
        REFERENCES projects (user_id, id) ON DELETE SET NULL (project_id),
    CONSTRAINT todos_active_title_check CHECK (btrim(title) <> ''),
    CONSTRAINT todos_active_status_check CHECK (status IN ('todo', 'in_progress', 'done', 'cancelled')),
    CONSTRAINT todos_active_priority_check CHECK (priority BETWEEN 1 AND 5),
    CONSTRAINT todos_active_completed_check CHECK ((completed_at IS NOT NULL) = (status IN ('done', 'cancelled'))),
    CONSTRAINT todos_active_depth_check CHECK (depth BETWEEN 0 AND ${max_depth}),
    CONSTRAINT todos_active_parent_check CHECK (parent_todo_id <> id)
) PARTITION BY HASH (user_id);

-- Archived todos: the active columns plus archived_at, one partition per month of archived_at (made ahead by
-- upkeep; no DEFAULT partition, which would block DETACH CONCURRENTLY and make every new month a rewrite).
-- No foreign keys: a subtree moves whole, and a deleted project leaves its archived todos as they were.
CREATE TABLE todos_archived (
    id             uuid         NOT NULL,
    user_id        uuid         NOT NULL,
    parent_todo_id uuid,
    project_id     uuid,
    title          varchar(500) NOT NULL,
    description    text,
    status         text         NOT NULL,
    priority       smallint     NOT NULL,
    due_date       timestamptz,
    completed_at   timestamptz,
    ai_generated   boolean      NOT NULL,
    depth          smallint     NOT NULL,
    created_at     timestamptz  NOT NULL,
    updated_at     timestamptz  NOT NULL,
    archived_at    timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT todos_archived_pkey PRIMARY KEY (user_id, id, archived_at),
    CONSTRAINT todos_archived_status_check CHECK (status IN ('todo', 'in_progress', 'done', 'cancelled')),
    CONSTRAINT todos_archived_priority_check CHECK (priority BETWEEN 1 AND 5),
    CONSTRAINT todos_archived_completed_check CHECK ((completed_at IS NOT NULL) = (status IN ('done', 'cancelled')))
) PARTITION BY RANGE (archived_at);

-- Indexes: each serves the query written above it, and no index is here without one.
-- They are made on the parents, so every partition (including later ones) gets them.

-- A user's active list, sort=created (newest first), keyset on (created_at, id):
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND (created_at, id) < (@created_at, @id) ORDER BY created_at DESC, id DESC LIMIT 50
CREATE INDEX todos_active_user_created_ix ON todos_active (user_id, created_at, id);

-- A user's active list filtered by one status, sort=created:
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND status = @status AND (created_at, id) < (@created_at, @id) ORDER BY created_at DESC, id DESC LIMIT 50
CREATE INDEX todos_active_user_status_created_ix ON todos_active (user_id, status, created_at, id);

-- A user's active list, sort=due (soonest first, no due date last):
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND (due_date, created_at, id) > (@due_date, @created_at, @id) ORDER BY due_date, created_at, id LIMIT 50
CREATE INDEX todos_active_user_due_ix ON todos_active (user_id, due_date, created_at, id);

-- A user's active list, sort=priority (most urgent first):
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND (priority, created_at, id) < (@priority, @created_at, @id) ORDER BY priority DESC, created_at DESC, id DESC LIMIT 50
CREATE INDEX todos_active_user_priority_ix ON todos_active (user_id, priority, created_at, id);

-- A parent's subtasks (and the parent foreign key's ON DELETE CASCADE lookup):
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND parent_todo_id = @parent_id ORDER BY created_at, id
CREATE INDEX todos_active_parent_ix ON todos_active (user_id, parent_todo_id, created_at, id) WHERE parent_todo_id IS NOT NULL;

-- A project's todos (and the project foreign key's ON DELETE SET NULL lookup):
-- query: SELECT id FROM todos_active WHERE user_id = @user_id AND project_id = @project_id ORDER BY created_at DESC, id DESC LIMIT 50
CREATE INDEX todos_active_project_ix ON todos_active (user_id, project_id, created_at, id) WHERE project_id IS NOT NULL;

-- The archiver's candidates in one partition: finished before the cut-off.
-- query: SELECT user_id, id FROM todos_active_p@partition WHERE status IN ('done', 'cancelled') AND completed_at < @completed_before ORDER BY completed_at LIMIT 5000
CREATE INDEX todos_active_archivable_ix ON todos_active (completed_at) WHERE status IN ('done', 'cancelled');

-- A user's archived todos, newest first (and merged into the active list with include_archived=true):
-- query: SELECT id FROM todos_archived WHERE user_id = @user_id AND (created_at, id) < (@created_at, @id) ORDER BY created_at DESC, id DESC LIMIT 50
CREATE INDEX todos_archived_user_created_ix ON todos_archived (user_id, created_at, id);

-- Depth, immutability and updated_at, kept by the database so no writer can get them wrong:
--   * depth is 0 for a root and the parent's depth + 1 for a subtask (the CHECK above bounds it);
--   * a todo cannot be moved under itself or under one of its own subtasks;
--   * user_id and id never change; updated_at follows every update.
CREATE FUNCTION todos_active_before_write() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    parent_depth smallint;
BEGIN
    IF TG_OP = 'UPDATE' THEN
        IF NEW.user_id <> OLD.user_id OR NEW.id <> OLD.id THEN
            RAISE EXCEPTION 'a todo''s user_id and id never change' USING ERRCODE = 'check_violation';
        END IF;
        NEW.updated_at := now();
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

CREATE TRIGGER todos_active_before_write BEFORE INSERT OR UPDATE ON todos_active
    FOR EACH ROW EXECUTE FUNCTION todos_active_before_write();

-- A todo that moved to another depth takes its subtree along, one level at a time (each child's update fires
-- this again); the depth CHECK rejects the whole statement when the subtree would end up too deep.
CREATE FUNCTION todos_active_after_depth_change() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    UPDATE todos_active SET depth = NEW.depth + 1 WHERE user_id = NEW.user_id AND parent_todo_id = NEW.id;
    RETURN NULL;
END $$;

CREATE TRIGGER todos_active_subtree_depth AFTER UPDATE OF parent_todo_id, depth ON todos_active
    FOR EACH ROW WHEN (NEW.depth <> OLD.depth) EXECUTE FUNCTION todos_active_after_depth_change();

CREATE FUNCTION projects_before_update() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    IF NEW.user_id <> OLD.user_id OR NEW.id <> OLD.id THEN
        RAISE EXCEPTION 'a project''s user_id and id never change' USING ERRCODE = 'check_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END $$;

CREATE TRIGGER projects_before_update BEFORE UPDATE ON projects
    FOR EACH ROW EXECUTE FUNCTION projects_before_update();

-- Grants on the parents (partitions copy them), then the tenant wall on the parents.
GRANT SELECT, INSERT, UPDATE, DELETE ON projects, todos_active TO todoscale_app;
GRANT SELECT ON todos_archived TO todoscale_app;
GRANT SELECT ON projects TO todoscale_archiver;
GRANT SELECT, INSERT, DELETE ON todos_active, todos_archived TO todoscale_archiver;

SELECT todoscale_secure_tenant_table('projects');
SELECT todoscale_secure_tenant_table('todos_active');
SELECT todoscale_secure_tenant_table('todos_archived');

SELECT todoscale_create_hash_partitions('todos_active', ${active_partitions});
SELECT todoscale_ensure_archive_months('todos_archived', (now() AT TIME ZONE 'UTC')::date, 3);
