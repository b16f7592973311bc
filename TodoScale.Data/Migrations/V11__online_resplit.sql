-- Online re-split of the hash partitions (`partitions split --to N`, PartitionSplit in the archiver).
--
-- 1. The subtask foreign key moves from the parent to each partition. A subtask and its parent belong to one user,
--    so they are always in the same hash partition: `todos_active_pNN (user_id, parent_todo_id) REFERENCES
--    todos_active_pNN (user_id, id)` enforces exactly what the parent-level key did. The parent-level key made the
--    re-split impossible (measured on PostgreSQL 15): DETACH PARTITION of a child holding subtasks fails with
--    "removing partition ... violates foreign key constraint" whatever the order, the session_replication_role or
--    CONCURRENTLY, and a NOT VALID key cannot be declared on a partitioned table referencing itself. With the key on
--    each partition, the swap is DETACH + ATTACH + ATTACH and takes milliseconds (the new children bring their own
--    validated key). Citus accepts foreign keys declared on a partition of a distributed table (co-located, same
--    distribution column).
--    On a populated database this migration reads every partition once to validate its key (the old key still
--    guarantees the rows, so it cannot fail); it runs in one transaction.
DO $$
DECLARE
    part record;
BEGIN
    FOR part IN
        SELECT c.oid::regclass AS rel, c.relname
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'todos_active'::regclass
         ORDER BY c.relname
    LOOP
        EXECUTE format(
            'ALTER TABLE %s ADD CONSTRAINT %I FOREIGN KEY (user_id, parent_todo_id) REFERENCES %s (user_id, id) ON DELETE CASCADE NOT VALID',
            part.rel, part.relname || '_parent_fkey', part.rel);
        EXECUTE format('ALTER TABLE %s VALIDATE CONSTRAINT %I', part.rel, part.relname || '_parent_fkey');
    END LOOP;
END $$;

ALTER TABLE todos_active DROP CONSTRAINT todos_active_parent_fkey;

-- 2. Progress of a re-split, one row per old partition: where its copy is (keyset on the primary key, saved in
--    the batch's own transaction, so a rerun after kill -9 resumes exactly) and which step it reached. Operator
--    metadata, not tenant data (like legacy_migration): no user_id, owner only, except the copy's position, which
--    the archiver role writes from its batches.
CREATE TABLE partition_split (
    table_name    text        NOT NULL,
    old_modulus   int         NOT NULL,
    remainder     int         NOT NULL,
    new_modulus   int         NOT NULL,
    step          text        NOT NULL DEFAULT 'copying',
    after_user_id uuid,
    after_id      uuid,
    copied        bigint      NOT NULL DEFAULT 0,
    total         bigint      NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    CONSTRAINT partition_split_pkey PRIMARY KEY (table_name, old_modulus, remainder),
    CONSTRAINT partition_split_table_check CHECK (table_name IN ('todos_active', 'ai_interactions')),
    CONSTRAINT partition_split_step_check CHECK (step IN ('copying', 'copied', 'swapped', 'done')),
    CONSTRAINT partition_split_modulus_check CHECK (new_modulus > old_modulus AND new_modulus % old_modulus = 0
                                                    AND remainder >= 0 AND remainder < old_modulus)
);

GRANT SELECT, UPDATE (after_user_id, after_id, copied, step, updated_at) ON partition_split TO todoscale_archiver;
