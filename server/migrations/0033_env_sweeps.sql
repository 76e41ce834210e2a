-- Environments whose create a killed server interrupted (issue 19, docs/prebuilds.md
-- "A killed server"). The Docker engine finishes requests whose caller died, so objects of
-- such an environment may appear after it was deleted; its delete is sent again for two
-- minutes after `deleted_ms`. A row outlives the environment's own row, so a server killed
-- again during those minutes resumes the sweeps when it starts.
CREATE TABLE env_sweeps (
    env_id TEXT PRIMARY KEY,
    agent_id BIGINT,
    deleted_ms BIGINT
);
