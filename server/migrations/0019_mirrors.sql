-- Mirrors of external git repositories (issue 15): a repository whose branches and tags are
-- fetched from an upstream when its forge's push webhook arrives. `secret` (the webhook
-- secret) and `token` (to fetch a private upstream) are sealed like repository secrets.
CREATE TABLE repo_mirrors (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    url TEXT NOT NULL,
    forge TEXT NOT NULL,
    secret TEXT NOT NULL,
    token TEXT,
    username TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    last_sync_at_ms BIGINT,
    last_sync_result TEXT
);

-- Push events recorded by the server itself (a mirror's fetch) name a system pusher such as
-- `mirror:github` instead of a user.
ALTER TABLE push_events ADD COLUMN pusher_name TEXT;
