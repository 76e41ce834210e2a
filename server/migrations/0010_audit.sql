-- The audit log (issue 14): who (user, token, agent), what (action, target, repository), when,
-- from where (client address) and with what result. Never secrets or request bodies; every
-- text column is bounded by the writer (server/src/audit). Rows older than [retention]
-- audit_days are deleted by the retention pass.
CREATE TABLE audit_log (
    id BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    username TEXT,
    token_id BIGINT,
    agent TEXT,
    auth TEXT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    repo TEXT,
    client TEXT,
    result TEXT NOT NULL,
    status BIGINT,
    detail TEXT
);
CREATE INDEX audit_log_at ON audit_log (at_ms);
CREATE INDEX audit_log_user ON audit_log (username, id);
CREATE INDEX audit_log_repo ON audit_log (repo, id);
