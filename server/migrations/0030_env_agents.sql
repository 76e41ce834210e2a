-- Environments on standalone agents (issue 20, docs/agents.md): the agent an environment
-- runs on (NULL: the server's embedded agent) and why placement chose it.
ALTER TABLE environments ADD COLUMN agent_id BIGINT;
ALTER TABLE environments ADD COLUMN placement TEXT;
