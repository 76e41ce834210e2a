-- Prebuilds (issue 19, docs/prebuilds.md). Per repository: which branches prebuild
-- (`branches`, a JSON list; empty: the default branch), whether prebuilds are on, and how many
-- succeeded prebuilds each branch keeps. A prebuild is one commit of one branch snapshotted
-- into images (`images`, a JSON list of {component, image}); its log is bounded (1 MiB).
-- `env_prebuilds` says which prebuild an environment was created from.
CREATE TABLE prebuild_settings (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    enabled BIGINT NOT NULL,
    branches TEXT NOT NULL,
    keep BIGINT NOT NULL
);

CREATE TABLE prebuilds (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    images TEXT NOT NULL,
    log TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT
);
CREATE INDEX prebuilds_branch ON prebuilds (repo_id, branch, state);
CREATE INDEX prebuilds_state ON prebuilds (state);

CREATE TABLE env_prebuilds (
    env_id TEXT PRIMARY KEY REFERENCES environments (id) ON DELETE CASCADE,
    prebuild_id BIGINT NOT NULL,
    sha TEXT NOT NULL
);

-- A random id of this installation, put on its snapshot images so that installations sharing
-- one Docker engine never collect each other's images.
CREATE TABLE prebuild_install (
    id TEXT PRIMARY KEY
);
