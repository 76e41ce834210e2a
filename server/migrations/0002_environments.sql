-- Dev environments. The applied plan is kept as JSON so the server can stop,
-- start and restart without re-reading the repository.
CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    owner_id BIGINT NOT NULL REFERENCES users (id),
    branch TEXT NOT NULL,
    devfile_path TEXT,
    state TEXT NOT NULL,
    reason TEXT,
    plan_json TEXT NOT NULL,
    devfile_text TEXT,
    restart_required BIGINT NOT NULL DEFAULT 0,
    devfile_changes TEXT,
    endpoints_json TEXT NOT NULL DEFAULT '[]',
    idle_timeout_secs BIGINT NOT NULL,
    last_activity_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (repo_id, name)
);

CREATE TABLE environment_events (
    id BIGINT PRIMARY KEY,
    env_id TEXT NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX environment_events_env ON environment_events (env_id, id);
