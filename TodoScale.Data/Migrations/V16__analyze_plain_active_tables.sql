-- On Citus, todos_active and ai_interactions are one distributed table each, whose shards are the partitions
-- (`migrate` there makes their hash partitions one plain table before it distributes them: CitusLayout). The
-- archiver's ANALYZE after a large move then names the table itself, which V6's helper refused (it allowed the
-- partitions of TodoScale's four partitioned tables only). It now allows those two tables too when they are plain;
-- on one PostgreSQL nothing changes (they are partitioned there, and the archiver analyzes a partition).
CREATE OR REPLACE FUNCTION todoscale_analyze(tbl regclass) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
BEGIN
    IF NOT EXISTS (
        SELECT FROM pg_inherits i
         WHERE i.inhrelid = tbl
           AND i.inhparent IN ('todos_active'::regclass, 'todos_archived'::regclass,
                               'ai_interactions'::regclass, 'ai_interactions_archived'::regclass))
       AND NOT EXISTS (
        SELECT FROM pg_class c
         WHERE c.oid = tbl AND c.relkind = 'r' AND c.oid IN ('todos_active'::regclass, 'ai_interactions'::regclass)) THEN
        RAISE EXCEPTION '% is not a partition of a TodoScale table', tbl USING ERRCODE = 'invalid_parameter_value';
    END IF;
    EXECUTE format('ANALYZE %s', tbl);
END $$;
