-- Approval gates (issue 15): `aws/approval` actions pause the run instead of running as
-- jobs. A gate's job row never gets a lease; this row marks it as a gate and counts its
-- rounds (a retried run opens the gate again), and why a conditional gate paused or passed.
CREATE TABLE approval_gates (
    job_id BIGINT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    round BIGINT NOT NULL DEFAULT 0,
    opened_at_ms BIGINT,
    expires_at_ms BIGINT,
    condition_note TEXT
);
CREATE INDEX approval_gates_run ON approval_gates (run_id);
CREATE INDEX approval_gates_expiry ON approval_gates (expires_at_ms);

-- Every decision: who, when, approve/reject, the comment, in which round.
CREATE TABLE approval_decisions (
    id BIGINT PRIMARY KEY,
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    round BIGINT NOT NULL,
    user_id BIGINT NOT NULL,
    user_name TEXT NOT NULL,
    decision TEXT NOT NULL,
    comment TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX approval_decisions_job ON approval_decisions (job_id, id);
