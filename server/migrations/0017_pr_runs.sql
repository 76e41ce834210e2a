-- Runs of PULLREQUEST triggers (issue 15): the pull request's number and the `pr_events` row
-- that fired the run. The unique index makes a pull request event start at most one run per
-- workflow file, however often it is processed.
ALTER TABLE runs ADD COLUMN pr_number BIGINT;
ALTER TABLE runs ADD COLUMN pr_event_id BIGINT;
CREATE UNIQUE INDEX runs_pr_event ON runs (pr_event_id, workflow_file);
CREATE INDEX runs_pr ON runs (repo_id, pr_number);

-- The cursor of pull request events whose runs are not created yet (1 for opened, revision,
-- closed and merged events until the runs engine has looked at them), so an event stored
-- just before a crash still starts its runs at the next start.
ALTER TABLE pr_events ADD COLUMN runs_pending BIGINT NOT NULL DEFAULT 0;
CREATE INDEX pr_events_runs_pending ON pr_events (runs_pending);
