-- Runs of PULLREQUEST triggers (issue 15): the pull request's number and the `pr_events` row
-- that fired the run. The unique index makes a pull request event start at most one run per
-- workflow file, however often it is processed.
ALTER TABLE runs ADD COLUMN pr_number BIGINT;
ALTER TABLE runs ADD COLUMN pr_event_id BIGINT;
CREATE UNIQUE INDEX runs_pr_event ON runs (pr_event_id, workflow_file);
CREATE INDEX runs_pr ON runs (repo_id, pr_number);
