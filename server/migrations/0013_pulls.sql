-- Pull requests (issue 15). `number` is per repository, allocated in the insert itself
-- (MAX + 1 under the unique index; a concurrent loser retries), so SQLite and PostgreSQL
-- give the same #1, #2, ….
CREATE TABLE pull_requests (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    source_branch TEXT NOT NULL,
    dest_branch TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    state TEXT NOT NULL,
    head_sha TEXT NOT NULL,
    base_sha TEXT NOT NULL,
    merge_sha TEXT,
    revision BIGINT NOT NULL DEFAULT 1,
    reviewers TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX pull_requests_number ON pull_requests (repo_id, number);
CREATE INDEX pull_requests_source ON pull_requests (repo_id, source_branch, state);

-- Each push to the source branch of an open PR is a revision.
CREATE TABLE pr_revisions (
    id BIGINT PRIMARY KEY,
    pr_id BIGINT NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    revision BIGINT NOT NULL,
    head_sha TEXT NOT NULL,
    base_sha TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX pr_revisions_pr ON pr_revisions (pr_id, revision);

-- Comments on the PR (path NULL) or on a line of its diff; replies name their parent.
CREATE TABLE pr_comments (
    id BIGINT PRIMARY KEY,
    pr_id BIGINT NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    parent_id BIGINT,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    path TEXT,
    side TEXT,
    line BIGINT,
    commit_sha TEXT,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX pr_comments_pr ON pr_comments (pr_id, id);

-- Reviews; `stale` is set on approvals when a new revision arrives (repository setting).
CREATE TABLE pr_reviews (
    id BIGINT PRIMARY KEY,
    pr_id BIGINT NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    reviewer_id BIGINT NOT NULL,
    reviewer_name TEXT NOT NULL,
    verdict TEXT NOT NULL,
    body TEXT NOT NULL,
    revision BIGINT NOT NULL,
    stale BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX pr_reviews_pr ON pr_reviews (pr_id, id);

-- pr_opened, pr_revision, pr_merged, pr_closed, review_submitted, comment_added.
CREATE TABLE pr_events (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    pr_id BIGINT NOT NULL REFERENCES pull_requests (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    actor TEXT,
    detail TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
CREATE INDEX pr_events_pr ON pr_events (pr_id, id);

-- Per-repository settings; no row: every merge method, approvals go stale.
CREATE TABLE pr_settings (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    allowed_merge_methods TEXT NOT NULL,
    stale_approvals BIGINT NOT NULL
);
