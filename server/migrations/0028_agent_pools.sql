-- Agent labels, capacity and pools (issue 20, docs/agents.md). An agent reports labels and
-- capacity (JSON) on registration and in its status reports. An administrator's agent pool
-- lists the repositories (and owners, all of whose repositories) its agents may serve; an
-- agent joins a pool by registering with a registration token made for that pool.
CREATE TABLE agent_pools (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_by BIGINT REFERENCES users (id) ON DELETE SET NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE agent_pool_repos (
    pool_id BIGINT NOT NULL REFERENCES agent_pools (id) ON DELETE CASCADE,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    PRIMARY KEY (pool_id, repo_id)
);

CREATE TABLE agent_pool_owners (
    pool_id BIGINT NOT NULL REFERENCES agent_pools (id) ON DELETE CASCADE,
    owner TEXT NOT NULL,
    PRIMARY KEY (pool_id, owner)
);

ALTER TABLE agents ADD COLUMN pool_id BIGINT;
ALTER TABLE agents ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agents ADD COLUMN capacity TEXT NOT NULL DEFAULT '{}';
ALTER TABLE agent_registration_tokens ADD COLUMN pool_id BIGINT;

-- The labels a job's agent must carry (JSON object; from `Compute.Fleet`).
ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
