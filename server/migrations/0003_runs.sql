-- Workflow runs (issue 5). A run keeps the workflow text it was created from, so a
-- later push never changes what an existing run executes.
CREATE TABLE runs (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    workflow TEXT NOT NULL,
    workflow_file TEXT NOT NULL,
    workflow_text TEXT NOT NULL,
    implicit_branch TEXT,
    run_mode TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    trigger_kind TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX runs_repo ON runs (repo_id, id);
CREATE INDEX runs_commit ON runs (repo_id, commit_sha);
CREATE INDEX runs_state ON runs (state);

-- One job per action. `attempt` fences reports: only the current attempt may report.
CREATE TABLE jobs (
    id BIGINT PRIMARY KEY,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx BIGINT NOT NULL,
    action TEXT NOT NULL,
    depends_on TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL DEFAULT 1,
    lease_expires_ms BIGINT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    timeout_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT,
    error TEXT,
    variables TEXT NOT NULL DEFAULT '{}',
    artifacts TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX jobs_run ON jobs (run_id, idx);
CREATE INDEX jobs_state ON jobs (state);

CREATE TABLE job_logs (
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    stream TEXT NOT NULL,
    ts BIGINT NOT NULL,
    text TEXT NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Invalid workflow files met on push: no run, but visible with file:line:col.
CREATE TABLE workflow_errors (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    file TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX workflow_errors_repo ON workflow_errors (repo_id, id);

-- Repository secrets, sealed with the server's key (data dir, mode 0600).
CREATE TABLE secrets (
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, name)
);
