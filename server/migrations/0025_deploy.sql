-- Deployment environments (issue 21): per repository named targets (dev, test, prod) with
-- their protection rules (JSON: who may deploy, required approvals and approvers, allowed
-- branch patterns).
CREATE TABLE deploy_environments (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    description TEXT NOT NULL,
    protection TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (repo_id, name)
);

-- AWS account connections of an environment, set by administrators only: the account, the
-- region, the role ARNs workflows may name (JSON list), an endpoint profile name.
CREATE TABLE deploy_connections (
    env_id BIGINT NOT NULL REFERENCES deploy_environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    account_id TEXT NOT NULL,
    region TEXT NOT NULL,
    roles TEXT NOT NULL,
    endpoints TEXT,
    PRIMARY KEY (env_id, name)
);

-- Environment-scoped variables; secrets (secret = 1) are sealed like repository secrets.
CREATE TABLE deploy_variables (
    env_id BIGINT NOT NULL REFERENCES deploy_environments (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    secret BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (env_id, name)
);

-- Every deploy action of a run into an environment: recorded when the run is created
-- (refused ones with their reason), its state follows the job's.
CREATE TABLE deployments (
    id BIGINT PRIMARY KEY,
    env_id BIGINT NOT NULL REFERENCES deploy_environments (id) ON DELETE CASCADE,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    job_id BIGINT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    action TEXT NOT NULL,
    actor TEXT,
    refused TEXT,
    rollback_of BIGINT,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX deployments_env ON deployments (env_id, id);
CREATE UNIQUE INDEX deployments_job ON deployments (job_id);
