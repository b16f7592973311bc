-- The archiver moves finished subtrees in one statement (DELETE .. RETURNING feeding INSERT) that names every
-- row it moves. A subtask added to a moving tree after that statement's snapshot would be deleted by the
-- parent's ON DELETE CASCADE without being archived: lost. While a transaction has set
-- todoscale.archiving = 'on', a delete that comes from a cascade (trigger depth > 1) is refused with a
-- serialization_failure instead: the batch rolls back whole and the archiver retries it with a fresh snapshot.
-- Outside the archiver (the API deleting a subtree) the cascade works as before.
CREATE FUNCTION todos_active_archive_guard() RETURNS trigger
LANGUAGE plpgsql SET search_path = public, pg_catalog AS $$
BEGIN
    IF pg_trigger_depth() > 1 AND current_setting('todoscale.archiving', true) = 'on' THEN
        RAISE EXCEPTION 'todo % of user % would be deleted by a cascade while archiving; the batch is retried',
            OLD.id, OLD.user_id USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN OLD;
END $$;

CREATE TRIGGER todos_active_archive_guard BEFORE DELETE ON todos_active
    FOR EACH ROW EXECUTE FUNCTION todos_active_archive_guard();
