-- CodeArtifact access per repository ('' = repository default) or per workflow
-- environment. The configuration is JSON (cove_api::PackageConfig): role ARN,
-- region, domain, owner, repositories, mode. No secret is stored here.
CREATE TABLE package_configs (
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    environment TEXT NOT NULL,
    config TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (repo_id, environment)
);
