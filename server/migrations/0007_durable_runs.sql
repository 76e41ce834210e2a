-- Nothing acknowledged is lost (issue 13 §4).
--
-- Push events whose runs have not been created yet. Runs are created from these stored
-- events (at start-up, on every push and periodically), not only from the in-memory bus;
-- events stored by an earlier version were handled by it, so they start as done.
ALTER TABLE push_events ADD COLUMN runs_pending BIGINT NOT NULL DEFAULT 1;
UPDATE push_events SET runs_pending = 0;
CREATE INDEX push_events_runs_pending ON push_events (runs_pending, id);

-- The push event a run was created from: at most one run per workflow file and event, so
-- processing an event again creates nothing twice.
ALTER TABLE runs ADD COLUMN push_event_id BIGINT;
CREATE UNIQUE INDEX runs_push_event ON runs (push_event_id, workflow_file);

-- SHA-256 of the agent's finish report that ended (or requeued) the current attempt: the
-- same report sent again is answered 200 and changes nothing.
ALTER TABLE jobs ADD COLUMN finish_digest TEXT;
