-- Batch buildspecs (issue 17): what a job's failure does to its run. `fail` (every job until
-- now): the run fails; `ignore` (a batch build with `ignore-failure`): the run does not fail
-- for it; `fail_fast` (a build of a batch with `fast-fail: true`): the run fails and its other
-- unfinished jobs are stopped.
ALTER TABLE jobs ADD COLUMN on_failure TEXT NOT NULL DEFAULT 'fail';
