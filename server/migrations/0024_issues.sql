-- Issues and the board (issue 16). One `issue_boards` row per repository, created with its
-- default columns on first use: every move and every insert first updates it, which
-- serializes them per repository on SQLite and PostgreSQL alike (a move is one transaction).
CREATE TABLE issue_boards (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    version BIGINT NOT NULL DEFAULT 0
);

-- Board columns in order; `wip_limit` NULL: no limit. The last column is the done column.
CREATE TABLE issue_columns (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    position BIGINT NOT NULL,
    wip_limit BIGINT
);
CREATE UNIQUE INDEX issue_columns_name ON issue_columns (repo_id, name);

-- Issues; `number` per repository (MAX + 1 under the board row's lock and the unique index).
-- `rank` orders cards within a column (gaps of 1024; renumbered when a gap closes).
-- `assignees` and `labels` are stored as `,a,b,` so a filter is one LIKE.
CREATE TABLE issues (
    id BIGINT PRIMARY KEY,
    repo_id BIGINT NOT NULL REFERENCES repos (id) ON DELETE CASCADE,
    number BIGINT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    column_id BIGINT NOT NULL REFERENCES issue_columns (id),
    card_rank BIGINT NOT NULL,
    assignees TEXT NOT NULL DEFAULT ',',
    labels TEXT NOT NULL DEFAULT ',',
    priority TEXT NOT NULL DEFAULT 'none',
    estimate TEXT,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX issues_number ON issues (repo_id, number);
CREATE INDEX issues_column ON issues (column_id, card_rank);

CREATE TABLE issue_comments (
    id BIGINT PRIMARY KEY,
    issue_id BIGINT NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    author_id BIGINT NOT NULL,
    author_name TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX issue_comments_issue ON issue_comments (issue_id, id);

-- Branches created from an issue (`POST …/issues/{n}/branch`).
CREATE TABLE issue_branches (
    issue_id BIGINT NOT NULL REFERENCES issues (id) ON DELETE CASCADE,
    branch TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (issue_id, branch)
);
