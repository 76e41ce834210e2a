-- Projects and members (issue 16). A project groups repositories (a repository belongs to at
-- most one project: `project_repos.repo_id` is the key); a member's role on each of them
-- derives from the project role unless `repo_members` has a row for that user (the override
-- wins). Invitations are pending until the invitee accepts; they give no access.
CREATE TABLE projects (
    id BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    name_key TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL,
    estimate_kind TEXT NOT NULL DEFAULT 'sizes',
    created_by BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE project_members (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    invited_by TEXT,
    since_ms BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_members_user ON project_members (user_id);

CREATE TABLE project_invitations (
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    user_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    invited_by TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (project_id, user_id)
);
CREATE INDEX project_invitations_user ON project_invitations (user_id);

CREATE TABLE project_repos (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    project_id BIGINT NOT NULL REFERENCES projects (id) ON DELETE CASCADE
);
CREATE INDEX project_repos_project ON project_repos (project_id);

-- A token scoped to one project (`POST /tokens {project}`): it opens only that project's
-- routes and repositories, and only while its user is a member.
ALTER TABLE tokens ADD COLUMN project_id BIGINT;
