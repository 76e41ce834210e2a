-- Schedules (issue 15): one row per SCHEDULE workflow file and branch it runs on. The row is
-- rewritten when a push changes the branch's workflow files; `next_fire_at_ms` (NULL: the
-- expression names no later minute) moves forward only by a conditional update in the same
-- transaction as the run it fires, so two servers or a restart never fire a slot twice.
CREATE TABLE schedules (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    workflow_file TEXT NOT NULL,
    branch TEXT NOT NULL,
    workflow TEXT NOT NULL,
    expression TEXT NOT NULL,
    next_fire_at_ms BIGINT,
    last_fired_at_ms BIGINT,
    last_run_id BIGINT,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX schedules_key ON schedules (repo_id, workflow_file, branch);
CREATE INDEX schedules_due ON schedules (next_fire_at_ms);

-- Runs get a per-repository number (#1, #2 …), allocated from the repository's counter in
-- the run's own transaction. Existing runs are numbered in creation order.
ALTER TABLE repos ADD COLUMN run_counter BIGINT NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN number BIGINT;
UPDATE runs SET number = (
    SELECT COUNT(*) FROM runs AS earlier
    WHERE earlier.repo_id = runs.repo_id AND earlier.id <= runs.id
);
UPDATE repos SET run_counter = (SELECT COUNT(*) FROM runs WHERE runs.repo_id = repos.id);
CREATE UNIQUE INDEX runs_number ON runs (repo_id, number);
