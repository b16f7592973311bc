-- Maintenance helpers for the archiver's upkeep.
--
-- ANALYZE needs the table's owner on PostgreSQL 15 (the MAINTAIN privilege arrives in 17). The archiver
-- analyzes a partition after a large move through this function, which is limited to the partitions of
-- TodoScale's four partitioned tables.
CREATE FUNCTION todoscale_analyze(tbl regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_inherits i
         WHERE i.inhrelid = tbl
           AND i.inhparent IN ('todos_active'::regclass, 'todos_archived'::regclass,
                               'ai_interactions'::regclass, 'ai_interactions_archived'::regclass)) THEN
        RAISE EXCEPTION '% is not a partition of a TodoScale table', tbl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ANALYZE %s', tbl);
END $$;

REVOKE EXECUTE ON FUNCTION todoscale_analyze(regclass) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION todoscale_analyze(regclass) TO todoscale_archiver;

-- The weekly REINDEX CONCURRENTLY picks indexes by their measured leaf density (pgstattuple's pgstatindex).
-- Where the server lacks the extension or the migrating role may not create it, upkeep reports that the
-- reindex step is skipped; nothing else depends on it.
DO $$
BEGIN
    CREATE EXTENSION IF NOT EXISTS pgstattuple;
EXCEPTION WHEN undefined_file OR insufficient_privilege OR feature_not_supported THEN
    RAISE NOTICE 'pgstattuple is not available (%): upkeep will skip the bloat-driven reindex', SQLERRM;
END $$;
