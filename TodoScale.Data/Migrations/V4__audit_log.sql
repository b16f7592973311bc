-- The audit log: who (a user or an operator) did what to which target, and when. Global, not tenant data, so
-- its key is id alone (on Citus: a reference table) and it has no row-level security. Append-only by grants:
-- the app and the archiver may only INSERT; only the owner can change or remove entries.

CREATE TABLE audit_log (
    id         uuid        NOT NULL DEFAULT gen_random_uuid(),
    at         timestamptz NOT NULL DEFAULT now(),
    actor_kind text        NOT NULL,
    actor      text        NOT NULL,
    action     text        NOT NULL,
    target     text,
    details    jsonb       NOT NULL DEFAULT '{}',
    CONSTRAINT audit_log_pkey PRIMARY KEY (id),
    CONSTRAINT audit_log_actor_kind_check CHECK (actor_kind IN ('user', 'operator', 'system')),
    CONSTRAINT audit_log_action_check CHECK (btrim(action) <> '')
);

GRANT INSERT ON audit_log TO todoscale_app, todoscale_archiver;
