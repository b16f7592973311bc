-- (1) The archiver analyzes the plain active tables on Citus. (2) Row-level security is not forced on Citus.
--
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

-- On Citus, row-level security is enabled on every tenant table but not forced. Citus grows a cluster online by
-- moving shards with logical replication, and the role its subscription replicates as is a member of the table's
-- owner that is not a superuser; PostgreSQL refuses to replicate into a table whose row-level security binds that
-- role ("cannot replicate into relation with row-level security enabled"), which FORCE does to the owner and its
-- members. Measured: every move that had rows to catch up (a write during the move) retried forever. Not forced,
-- the owner (the role that runs `migrate`, which no service connects as) bypasses the policy as owners do; the API's
-- role is bound by it on every table and shard as before, and the archiver's role bypasses it as before (BYPASSRLS).
-- `migrate` on Citus (CitusLayout) takes FORCE off the tables made before this; partitions made from here on (archive
-- months) get it only on one PostgreSQL.
CREATE OR REPLACE FUNCTION todoscale_secure_tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    IF NOT EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    END IF;
    IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = 'tenant_isolation') THEN
        EXECUTE format(
            $sql$CREATE POLICY tenant_isolation ON %s
                 USING (user_id = current_setting('app.user_id')::uuid)
                 WITH CHECK (user_id = current_setting('app.user_id')::uuid)$sql$, tbl);
    END IF;
END $$;
