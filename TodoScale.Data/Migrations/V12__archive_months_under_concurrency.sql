-- Archive months made safely by any number of callers at once (the archivers of several partitions, two archivers,
-- `migrate`, `maintain`, at the start of a month).
--
-- V1's todoscale_ensure_archive_months looked the month up with to_regclass and then ran CREATE TABLE with no lock
-- between the two: two callers both saw no month, both tried to create it, and the second failed with 42P07
-- "relation todos_archived_y2026m11 already exists" (seen on main on 2026-12-03). It also re-ran the GRANTs of
-- every month that already existed, and two GRANTs on one table at once fail with "tuple concurrently updated".
--
-- Now a missing month is made under LOCK TABLE ONLY <archive table> IN SHARE UPDATE EXCLUSIVE MODE: it conflicts
-- with itself, so callers making months queue one behind the other, but not with the reads and inserts of the
-- archive table (ACCESS SHARE, ROW EXCLUSIVE), and ONLY keeps it off the existing months. Taking a table lock makes
-- PostgreSQL read the catalog changes committed meanwhile, so the look-up repeated after the lock sees a month the
-- caller before it made: exactly one caller creates a month, the others find it, nobody fails. A month that
-- already exists costs a look-up and no lock. A month is secured (tenant wall, grants) in the transaction that
-- creates it, and only then.
CREATE OR REPLACE FUNCTION todoscale_ensure_archive_months(parent regclass, from_day date, months_ahead int) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog AS $$
DECLARE
    parent_name text := (SELECT relname FROM pg_class WHERE oid = parent);
    month_start date;
    part_name text;
    locked boolean := false;
    created int := 0;
BEGIN
    IF parent_name IS NULL OR parent_name NOT IN ('todos_archived', 'ai_interactions_archived') THEN
        RAISE EXCEPTION '% is not an archive table', parent USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF months_ahead IS NULL OR months_ahead < 0 OR months_ahead > 36 THEN
        RAISE EXCEPTION 'months_ahead % is out of range 0..36', months_ahead USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF from_day IS NULL THEN
        RAISE EXCEPTION 'from_day must not be null' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    FOR i IN 0 .. months_ahead LOOP
        month_start := (date_trunc('month', from_day) + make_interval(months => i))::date;
        part_name := format('%s_y%sm%s', parent_name, to_char(month_start, 'YYYY'), to_char(month_start, 'MM'));
        CONTINUE WHEN to_regclass(part_name) IS NOT NULL;
        IF NOT locked THEN
            EXECUTE format('LOCK TABLE ONLY %s IN SHARE UPDATE EXCLUSIVE MODE', parent);
            locked := true;
            -- Whoever held the lock before may have made it: the look-up after the lock sees their commit.
            CONTINUE WHEN to_regclass(part_name) IS NOT NULL;
        END IF;
        EXECUTE format('CREATE TABLE %I PARTITION OF %s FOR VALUES FROM (%L) TO (%L)',
                       part_name, parent,
                       to_char(month_start, 'YYYY-MM-DD') || ' 00:00:00+00',
                       to_char((month_start + interval '1 month')::date, 'YYYY-MM-DD') || ' 00:00:00+00');
        PERFORM todoscale_secure_partition(parent, part_name::regclass);
        created := created + 1;
    END LOOP;
    RETURN created;
END $$;
