-- Branch rules (issue 15, branch protection): a repository's ordered rules, first match
-- applies. Lists (required checks, merge roles, merge users) are JSON arrays of strings.
CREATE TABLE branch_rules (
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    position BIGINT NOT NULL,
    pattern TEXT NOT NULL,
    require_pull_request BIGINT NOT NULL DEFAULT 0,
    required_approvals BIGINT NOT NULL DEFAULT 0,
    required_checks TEXT NOT NULL DEFAULT '[]',
    merge_roles TEXT NOT NULL DEFAULT '[]',
    merge_users TEXT NOT NULL DEFAULT '[]',
    allow_force_push BIGINT NOT NULL DEFAULT 0,
    allow_deletion BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo_id, position)
);
