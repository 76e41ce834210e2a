-- Test and coverage reports of runs (issue 17): one row per report of a job, the summary as
-- JSON (cove_api::RunReport: totals, the first failed cases, coverage per file; bounded by
-- workflows::reports). A retried job's reports replace its earlier ones.
CREATE TABLE run_reports (
    id BIGINT PRIMARY KEY,
    run_id BIGINT NOT NULL,
    job_id BIGINT NOT NULL,
    name TEXT NOT NULL,
    report_json TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX run_reports_run ON run_reports (run_id, id);
CREATE INDEX run_reports_job ON run_reports (job_id);
