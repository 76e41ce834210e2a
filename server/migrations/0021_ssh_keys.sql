-- SSH public keys (issue 18): a user's keys authenticate them at Cove's SSH endpoint.
-- A key (by its SHA-256 fingerprint) belongs to one user at most, so a login names one user.
CREATE TABLE ssh_keys (
    id BIGINT PRIMARY KEY,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE,
    public_key TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT
);
CREATE INDEX ssh_keys_user ON ssh_keys (user_id, id);
