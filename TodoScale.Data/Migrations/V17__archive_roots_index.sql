-- The archiver's candidates in one partition, as it reads them a batch at a time: top-level todos finished before
-- the cut-off, in (completed_at, id) order after the last batch's, with the user whose tree each is. V2's
-- todos_active_archivable_ix (completed_at, every finished todo) could not stop at a batch: each batch was a bitmap
-- scan of every finished todo of the partition past the last one, subtasks included, and a sort (at 250,000 rows a
-- partition, 30 ms and 3,900 pages for 3,670 roots). This index holds the roots only, in the statement's order, with
-- the user: an index-only range scan that reads the batch's entries and stops (0.9 ms, 29 pages).
--
-- Built online: here only the parent's index (ON ONLY: no partition is touched, so no lock on their rows), invalid
-- until each partition has its own; `migrate` then builds each partition's with CREATE INDEX CONCURRENTLY and
-- attaches it (PartitionedIndexes), after which PostgreSQL marks the parent valid. A partition made later (a
-- re-split, a new month) gets it from the parent.
-- query: SELECT user_id, id, completed_at FROM todos_active_p@partition WHERE status IN ('done', 'cancelled') AND completed_at < @completed_before AND parent_todo_id IS NULL ORDER BY completed_at, id LIMIT 5000
CREATE INDEX todos_active_archive_roots_ix ON ONLY todos_active (completed_at, id) INCLUDE (user_id)
    WHERE status IN ('done', 'cancelled') AND parent_todo_id IS NULL;
