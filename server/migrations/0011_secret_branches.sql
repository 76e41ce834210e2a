-- Issue 14: a secret is given to runs of the repository's default branch only, unless it is
-- marked for all branches (`cove secret set --all-branches`). Existing secrets: default branch only.
ALTER TABLE secrets ADD COLUMN all_branches BIGINT NOT NULL DEFAULT 0;
