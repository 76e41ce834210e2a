-- Per-repository retention of runs, logs and artifacts (issue 13); a repository without a row
-- uses the server-wide default ([retention] in the config).
CREATE TABLE repo_retention (
    repo_id BIGINT PRIMARY KEY REFERENCES repos (id) ON DELETE CASCADE,
    days BIGINT NOT NULL,
    runs BIGINT NOT NULL
);
