-- On a Citus coordinator, before {table} is distributed: its local hash partitions become one plain table with the
-- same columns, rows, keys, indexes, triggers, row-level security, policies and grants, so that Citus' shards are
-- the partitions (measured: 16 local partitions each distributed cost 36% more page latency and 17x the shards of
-- one distributed table; README, "TodoScale on Citus"). One statement, so one transaction: either the plain table
-- is in place with everything it had, or nothing changed. {table} is one of TodoScale's own table names.
--
-- Everything is read from the catalog, not restated here, so a later migration's index, trigger or grant on the
-- parent comes along too. Two kinds of objects are made again in another shape:
--   * a foreign key declared on each partition and referencing that partition (V11's subtask key,
--     todos_active_pNN_parent_fkey) becomes one key on the table referencing itself, named after the table
--     (todos_active_parent_fkey), with the partition's definition;
--   * the partitioned indexes (ON ONLY) become plain indexes with the same names and definitions.
DO $flatten$
DECLARE
    parent regclass := to_regclass('{table}');
    flat_name text := '{table}_flat';
    columns text;
    statements text[] := '{}';
    statement text;
    r record;
BEGIN
    IF parent IS NULL OR (SELECT relkind FROM pg_class WHERE oid = parent) <> 'p' THEN
        RETURN; -- already plain (flattened earlier), or absent
    END IF;

    SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) INTO columns
      FROM pg_attribute WHERE attrelid = parent AND attnum > 0 AND NOT attisdropped;

    -- Keys declared on the table itself (CHECK and NOT NULL come with LIKE), foreign keys first dropped by DROP.
    FOR r IN
        SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint
         WHERE conrelid = parent AND contype IN ('p', 'u', 'x', 'f') AND conparentid = 0
         ORDER BY contype = 'f', conname
    LOOP
        statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I %s', parent::text, r.conname, r.def);
    END LOOP;

    -- Each partition's key on itself, once, as the table's key on itself.
    FOR r IN
        SELECT DISTINCT ON (name) name, def FROM (
            SELECT '{table}' || substring(c.conname FROM '^{table}_p[0-9]+(_.*)$') AS name,
                   regexp_replace(pg_get_constraintdef(c.oid), 'REFERENCES [^(]+\(', 'REFERENCES {table}(') AS def
              FROM pg_inherits i JOIN pg_constraint c ON c.conrelid = i.inhrelid
             WHERE i.inhparent = parent AND c.contype = 'f' AND c.confrelid = c.conrelid AND c.conparentid = 0) keys
         WHERE name IS NOT NULL
         ORDER BY name
    LOOP
        statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I %s', parent::text, r.name, r.def);
    END LOOP;

    -- Foreign keys of other tables on this one: dropped with it, declared again on the plain table.
    FOR r IN
        SELECT c.conrelid::regclass AS other, c.conname, pg_get_constraintdef(c.oid) AS def FROM pg_constraint c
         WHERE c.confrelid = parent AND c.contype = 'f' AND c.conparentid = 0 AND c.conrelid <> parent
           AND c.conrelid NOT IN (SELECT inhrelid FROM pg_inherits WHERE inhparent = parent)
    LOOP
        EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', r.other, r.conname);
        statements := statements || format('ALTER TABLE %s ADD CONSTRAINT %I %s', r.other, r.conname, r.def);
    END LOOP;

    -- Indexes that back no constraint.
    FOR r IN
        SELECT pg_get_indexdef(x.indexrelid) AS def FROM pg_index x
         WHERE x.indrelid = parent AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conindid = x.indexrelid AND c.conrelid = parent)
         ORDER BY x.indexrelid
    LOOP
        statements := statements || replace(r.def, ' ON ONLY ', ' ON ');
    END LOOP;

    -- Triggers declared on the table (the partitions' clones go with them).
    FOR r IN
        SELECT pg_get_triggerdef(oid) AS def FROM pg_trigger
         WHERE tgrelid = parent AND NOT tgisinternal AND tgparentid = 0 ORDER BY tgname
    LOOP
        statements := statements || r.def;
    END LOOP;

    -- Row-level security and its policies.
    IF (SELECT relrowsecurity FROM pg_class WHERE oid = parent) THEN
        statements := statements || format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', parent::text);
    END IF;
    IF (SELECT relforcerowsecurity FROM pg_class WHERE oid = parent) THEN
        statements := statements || format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', parent::text);
    END IF;
    FOR r IN
        SELECT p.polname,
               CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END AS kind,
               CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END AS cmd,
               (SELECT string_agg(CASE WHEN role = 0 THEN 'PUBLIC' ELSE role::regrole::text END, ', ')
                  FROM unnest(p.polroles) role) AS roles,
               pg_get_expr(p.polqual, p.polrelid) AS qual,
               pg_get_expr(p.polwithcheck, p.polrelid) AS with_check
          FROM pg_policy p WHERE p.polrelid = parent ORDER BY p.polname
    LOOP
        statements := statements || format('CREATE POLICY %I ON %s AS %s FOR %s TO %s%s%s', r.polname, parent::text, r.kind, r.cmd, r.roles,
            CASE WHEN r.qual IS NULL THEN '' ELSE ' USING (' || r.qual || ')' END,
            CASE WHEN r.with_check IS NULL THEN '' ELSE ' WITH CHECK (' || r.with_check || ')' END);
    END LOOP;

    -- Grants on the table and on its columns, and the owner.
    FOR r IN
        SELECT acl.privilege_type, acl.grantee::regrole AS grantee
          FROM pg_class c CROSS JOIN LATERAL aclexplode(c.relacl) acl
         WHERE c.oid = parent AND acl.grantee <> c.relowner AND acl.grantee <> 0
    LOOP
        statements := statements || format('GRANT %s ON %s TO %s', r.privilege_type, parent::text, r.grantee);
    END LOOP;
    FOR r IN
        SELECT a.attname, acl.privilege_type, acl.grantee::regrole AS grantee
          FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid CROSS JOIN LATERAL aclexplode(a.attacl) acl
         WHERE a.attrelid = parent AND a.attnum > 0 AND NOT a.attisdropped AND a.attacl IS NOT NULL
           AND acl.grantee <> c.relowner AND acl.grantee <> 0
    LOOP
        statements := statements || format('GRANT %s (%I) ON %s TO %s', r.privilege_type, r.attname, parent::text, r.grantee);
    END LOOP;
    statements := statements || format('ALTER TABLE %s OWNER TO %s', parent::text, (SELECT relowner::regrole::text FROM pg_class WHERE oid = parent));
    IF obj_description(parent, 'pg_class') IS NOT NULL THEN
        statements := statements || format('COMMENT ON TABLE %s IS %L', parent::text, obj_description(parent, 'pg_class'));
    END IF;

    -- The plain table, the rows, the swap (names are free once the partitioned table is gone), then everything above.
    EXECUTE format('CREATE TABLE %I (LIKE %s INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY '
                   'INCLUDING STORAGE INCLUDING COMPRESSION INCLUDING COMMENTS)', flat_name, parent);
    -- The owner copies every tenant's rows: FORCE ROW LEVEL SECURITY would bind it to one tenant (the plain table
    -- gets it back below).
    EXECUTE format('ALTER TABLE %s NO FORCE ROW LEVEL SECURITY', parent);
    EXECUTE format('INSERT INTO %I (%s) SELECT %s FROM %s', flat_name, columns, columns, parent);
    EXECUTE format('DROP TABLE %s', parent);
    EXECUTE format('ALTER TABLE %I RENAME TO %I', flat_name, '{table}');
    FOREACH statement IN ARRAY statements LOOP
        EXECUTE statement;
    END LOOP;
END $flatten$;
