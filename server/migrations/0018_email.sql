-- Email notifications (issue 15): users get an optional address, and the outbox also holds
-- deliveries to one user (an approver, a reviewer, an environment's owner) that belong to
-- no target. `notify_deliveries` is rebuilt (SQLite cannot drop a NOT NULL): a row has a
-- `target_id` or a `user_id`; each has its own once-per-event unique key.
ALTER TABLE users ADD COLUMN email TEXT;

CREATE TABLE notify_deliveries_v2 (
    id BIGINT PRIMARY KEY,
    target_id BIGINT REFERENCES notify_targets (id) ON DELETE CASCADE,
    user_id BIGINT REFERENCES users (id) ON DELETE CASCADE,
    event TEXT NOT NULL,
    event_key TEXT NOT NULL,
    body TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_ms BIGINT NOT NULL,
    response_code BIGINT,
    error TEXT,
    duration_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
INSERT INTO notify_deliveries_v2 (id, target_id, user_id, event, event_key, body, status,
    attempts, next_attempt_ms, response_code, error, duration_ms, created_at_ms, finished_at_ms)
SELECT id, target_id, NULL, event, event_key, body, status, attempts, next_attempt_ms,
    response_code, error, duration_ms, created_at_ms, finished_at_ms
FROM notify_deliveries;
DROP TABLE notify_deliveries;
ALTER TABLE notify_deliveries_v2 RENAME TO notify_deliveries;
CREATE UNIQUE INDEX notify_deliveries_key ON notify_deliveries (target_id, event_key);
CREATE UNIQUE INDEX notify_deliveries_user_key ON notify_deliveries (user_id, event_key);
CREATE INDEX notify_deliveries_due ON notify_deliveries (status, next_attempt_ms);
CREATE INDEX notify_deliveries_target ON notify_deliveries (target_id, id);
CREATE INDEX notify_deliveries_user ON notify_deliveries (user_id, id);
