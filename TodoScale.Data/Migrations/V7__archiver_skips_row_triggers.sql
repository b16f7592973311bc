-- The archiver's batches without per-row triggers.
--
-- Measured (bench, EXPLAIN ANALYZE of one batch of 2,670 rows): the parent foreign key's ON DELETE CASCADE
-- trigger took 128 ms of the batch's 174 ms (48 us per deleted row, one RI query each), and the archive guard
-- 6 ms more. The batch already deletes every subtask it moves, so the cascade finds nothing to do. Where the
-- archiver may, it runs its batch transaction with SET LOCAL session_replication_role = replica (no per-row
-- triggers for that transaction alone; every other session keeps its foreign keys and triggers) and replaces
-- the cascade guard by one set-based check after the move, in the same transaction: a subtask committed under
-- a moved todo after the move's snapshot rolls the batch back and it is retried (see TodoArchiver).
--
-- SET on session_replication_role needs a superuser or a grant (PostgreSQL 15: GRANT SET ON PARAMETER).
-- Where the migrating role may not grant it, the archiver keeps the per-row path (triggers and guard), slower
-- and as safe.
DO $$
BEGIN
    GRANT SET ON PARAMETER session_replication_role TO todoscale_archiver;
EXCEPTION WHEN insufficient_privilege OR undefined_object THEN
    RAISE NOTICE 'session_replication_role cannot be granted to todoscale_archiver (%): the archiver moves rows with per-row triggers', SQLERRM;
END $$;
