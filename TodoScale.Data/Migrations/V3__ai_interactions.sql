-- AI interactions: every prompt sent for a todo and what came back (generated subtasks, summaries, ...).
-- Hash-partitioned by user like todos_active; interactions older than the archiver's AiOlderThan move weekly to
-- ai_interactions_archived, one partition per month of archived_at.
-- todo_id has no foreign key on purpose: the todo moves to todos_archived on its own schedule, and the record of
-- what the model was asked must survive that move. The API deletes a todo's interactions with the todo.

CREATE TABLE ai_interactions (
    user_id     uuid         NOT NULL,
    id          uuid         NOT NULL,
    todo_id     uuid         NOT NULL,
    kind        varchar(50)  NOT NULL,
    model       varchar(100) NOT NULL,
    prompt      text         NOT NULL,
    response    text,
    tokens_in   integer      NOT NULL DEFAULT 0,
    tokens_out  integer      NOT NULL DEFAULT 0,
    latency_ms  integer      NOT NULL DEFAULT 0,
    created_at  timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT ai_interactions_pkey PRIMARY KEY (user_id, id),
    CONSTRAINT ai_interactions_kind_check CHECK (kind ~ '^[a-z][a-z0-9_]*$'),
    CONSTRAINT ai_interactions_model_check CHECK (btrim(model) <> ''),
    CONSTRAINT ai_interactions_counts_check CHECK (tokens_in >= 0 AND tokens_out >= 0 AND latency_ms >= 0)
) PARTITION BY HASH (user_id);

CREATE TABLE ai_interactions_archived (
    user_id     uuid         NOT NULL,
    id          uuid         NOT NULL,
    todo_id     uuid         NOT NULL,
    kind        varchar(50)  NOT NULL,
    model       varchar(100) NOT NULL,
    prompt      text         NOT NULL,
    response    text,
    tokens_in   integer      NOT NULL,
    tokens_out  integer      NOT NULL,
    latency_ms  integer      NOT NULL,
    created_at  timestamptz  NOT NULL,
    archived_at timestamptz  NOT NULL DEFAULT now(),
    CONSTRAINT ai_interactions_archived_pkey PRIMARY KEY (user_id, id, archived_at)
) PARTITION BY RANGE (archived_at);

-- A todo's interactions, newest first:
-- query: SELECT id FROM ai_interactions WHERE user_id = @user_id AND todo_id = @todo_id ORDER BY created_at DESC LIMIT 50
CREATE INDEX ai_interactions_user_todo_ix ON ai_interactions (user_id, todo_id, created_at);

-- The archiver's candidates in one partition: older than the cut-off.
-- query: SELECT user_id, id FROM ai_interactions_p@partition WHERE created_at < @created_before ORDER BY created_at LIMIT 5000
CREATE INDEX ai_interactions_created_ix ON ai_interactions (created_at);

GRANT SELECT, INSERT, DELETE ON ai_interactions TO todoscale_app;
GRANT SELECT ON ai_interactions_archived TO todoscale_app;
GRANT SELECT, INSERT, DELETE ON ai_interactions, ai_interactions_archived TO todoscale_archiver;

SELECT todoscale_secure_tenant_table('ai_interactions');
SELECT todoscale_secure_tenant_table('ai_interactions_archived');

SELECT todoscale_create_hash_partitions('ai_interactions', ${active_partitions});
SELECT todoscale_ensure_archive_months('ai_interactions_archived', (now() AT TIME ZONE 'UTC')::date, 3);
