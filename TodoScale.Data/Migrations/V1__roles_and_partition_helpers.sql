-- Roles and the helpers every partition is made with.
--
-- The owner is the role that runs `migrate`: it owns every object below. Two more roles, cluster-wide, so
-- created only when missing (several TodoScale databases on one server share them):
--   todoscale_app       the API. Row-level security applies to it: it sees and writes one tenant's rows, the
--                       tenant named by `SET LOCAL app.user_id` in its transaction.
--   todoscale_archiver  the archiver. BYPASSRLS: it moves every user's rows between the active and archive tables.
-- Both are NOLOGIN: a deployment grants them to its login roles (GRANT todoscale_app TO api_login).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todoscale_app') THEN
        CREATE ROLE todoscale_app NOLOGIN NOBYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object THEN NULL; -- another database's migrate created it a moment ago
END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'todoscale_archiver') THEN
        CREATE ROLE todoscale_archiver NOLOGIN BYPASSRLS;
    END IF;
EXCEPTION WHEN duplicate_object THEN NULL;
END $$;

-- On Citus, SET LOCAL app.user_id must reach the workers with the transaction (set_config does not).
DO $$
BEGIN
    IF EXISTS (SELECT FROM pg_extension WHERE extname = 'citus') THEN
        ALTER ROLE todoscale_app SET citus.propagate_set_commands = 'local';
    END IF;
END $$;

GRANT USAGE ON SCHEMA public TO todoscale_app, todoscale_archiver;

-- Row-level security on one tenant table (a parent or a partition): enabled, forced (so the owner is bound
-- too, unless it is a superuser), and the one policy: a row belongs to the transaction's tenant.
-- A transaction that never set app.user_id fails closed: current_setting raises, or ''::uuid does.
CREATE FUNCTION todoscale_secure_tenant_table(tbl regclass) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', tbl);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', tbl);
    IF NOT EXISTS (SELECT FROM pg_policy WHERE polrelid = tbl AND polname = 'tenant_isolation') THEN
        EXECUTE format(
            $sql$CREATE POLICY tenant_isolation ON %s
                 USING (user_id = current_setting('app.user_id')::uuid)
                 WITH CHECK (user_id = current_setting('app.user_id')::uuid)$sql$, tbl);
    END IF;
END $$;

-- A new partition inherits neither row-level security, nor policies, nor grants from its parent. Everything
-- that makes a partition (this migration, archive upkeep, the online re-split) calls this in the same
-- transaction, so a partition is never reachable without the tenant wall. Grants are copied from the parent.
CREATE FUNCTION todoscale_secure_partition(parent regclass, part regclass) RETURNS void
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    grant_row record;
BEGIN
    PERFORM todoscale_secure_tenant_table(part);
    FOR grant_row IN
        SELECT acl.privilege_type, acl.grantee::regrole AS grantee
        FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) acl
        WHERE c.oid = parent AND acl.grantee <> c.relowner AND acl.grantee <> 0
    LOOP
        EXECUTE format('GRANT %s ON %s TO %s', grant_row.privilege_type, part, grant_row.grantee);
    END LOOP;
END $$;

-- The hash partitions <parent>_p00 .. of a table partitioned by hash (user_id); two digits so 32 and 64 fit.
-- Idempotent: a partition that exists is left as it is (and secured again, which changes nothing).
CREATE FUNCTION todoscale_create_hash_partitions(parent regclass, partition_count int) RETURNS int
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    part_name text;
    created int := 0;
BEGIN
    IF partition_count < 1 OR partition_count > 1024 THEN
        RAISE EXCEPTION 'hash partition count % is out of range 1..1024', partition_count USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR r IN 0 .. partition_count - 1 LOOP
        part_name := format('%s_p%s', parent_name, lpad(r::text, 2, '0'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES WITH (MODULUS %s, REMAINDER %s)',
                           part_name, parent, partition_count, r);
            created := created + 1;
        END IF;
        PERFORM todoscale_secure_partition(parent, part_name::regclass);
    END LOOP;
    RETURN created;
END $$;

-- The monthly partitions <parent>_yYYYYmMM of an archive table partitioned by range (archived_at), for the
-- month of from_day and months_ahead months after it, bounds at midnight UTC on the first of each month.
-- Idempotent. SECURITY DEFINER so the archiver's upkeep can make months without owning the table; it is
-- limited to the archive tables and returns how many partitions it created.
CREATE FUNCTION todoscale_ensure_archive_months(parent regclass, from_day date, months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    month_start date;
    part_name text;
    created int := 0;
BEGIN
    IF parent_name NOT IN ('todos_archived', 'ai_interactions_archived') THEN
        RAISE EXCEPTION '% is not an archive table', parent USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF months_ahead < 0 OR months_ahead > 36 THEN
        RAISE EXCEPTION 'months_ahead % is out of range 0..36', months_ahead USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. months_ahead LOOP
        month_start := (date_trunc('month', from_day) + make_interval(months => i))::date;
        part_name := format('%s_y%sm%s', parent_name, to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
        IF to_regclass(part_name) IS NULL THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                           part_name, parent,
                           to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00',
                           to_char((month_start + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00');
            created := created + 1;
        END IF;
        PERFORM todoscale_secure_partition(parent, part_name::regclass);
    END LOOP;
    RETURN created;
END $$;

REVOKE EXECUTE ON FUNCTION todoscale_secure_tenant_table(regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION todoscale_secure_partition(regclass, regclass) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION todoscale_create_hash_partitions(regclass, int) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION todoscale_ensure_archive_months(regclass, date, int) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION todoscale_ensure_archive_months(regclass, date, int) TO todoscale_archiver;
