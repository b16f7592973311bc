-- The legacy backfill's batches without per-row triggers (LegacyMigration, Legacy:SkipRowTriggers).
--
-- Under session_replication_role = replica the foreign keys' checks do not run, so the batch locks what they would
-- have locked itself: each copied subtask's parent in todos_active and each project, FOR KEY SHARE (a concurrent
-- delete waits for the batch, then cascades to its copies). Row locks need an UPDATE privilege on some column:
-- updated_at, which the archiver role never writes.
GRANT UPDATE (updated_at) ON todos_active, projects TO todoscale_archiver;
