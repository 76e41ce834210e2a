-- Agents as their own principals (issue 6): an agent registers once with a one-time
-- registration token and then authenticates with its own agent token. Only SHA-256 hashes
-- of both kinds of token are stored.
CREATE TABLE agents (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    token_hash TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    revoked_at BIGINT
);

CREATE TABLE agent_registration_tokens (
    id BIGINT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    created_by BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by_agent BIGINT REFERENCES agents (id)
);

-- The agent that holds (or last held) a job's lease; NULL for the embedded agent.
ALTER TABLE jobs ADD COLUMN agent_id BIGINT;
CREATE INDEX jobs_agent ON jobs (agent_id);
