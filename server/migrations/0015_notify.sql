-- Notifications (issue 15): per repository targets and a durable outbox of deliveries.
-- A delivery row is written when its event happens and is sent by a background worker;
-- pending rows survive a restart and are sent then. `event_key` makes an event enqueue at
-- most once per target however often the code that notices it runs.
CREATE TABLE notify_targets (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT,
    events TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX notify_targets_repo ON notify_targets (repo_id);

CREATE TABLE notify_deliveries (
    id BIGINT PRIMARY KEY,
    target_id BIGINT NOT NULL REFERENCES notify_targets (id) ON DELETE CASCADE,
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
CREATE UNIQUE INDEX notify_deliveries_key ON notify_deliveries (target_id, event_key);
CREATE INDEX notify_deliveries_due ON notify_deliveries (status, next_attempt_ms);
CREATE INDEX notify_deliveries_target ON notify_deliveries (target_id, id);
