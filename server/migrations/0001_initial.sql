-- Portable between SQLite and PostgreSQL: ids are assigned by the server, times are integers.
CREATE TABLE users (
    id BIGINT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    password_hash TEXT,
    is_admin BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX tokens_user ON tokens (user_id);

CREATE TABLE repos (
    id BIGINT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    owner_id BIGINT NOT NULL REFERENCES users (id),
    visibility TEXT NOT NULL,
    default_branch TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (owner, name)
);

CREATE TABLE repo_members (
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    PRIMARY KEY (repo_id, user_id)
);

CREATE TABLE push_events (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    ref_name TEXT NOT NULL,
    old_sha TEXT NOT NULL,
    new_sha TEXT NOT NULL,
    -- NULL: recovered at start-up from a push whose acknowledgement was cut off.
    pusher_id BIGINT REFERENCES users (id),
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX push_events_repo ON push_events (repo_id, id);
