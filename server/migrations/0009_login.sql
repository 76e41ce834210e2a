-- Logins and tokens (issue 14): disabled accounts, and user and repository names that are
-- unique without regard to case ("Admin" can no longer sit beside "admin"). Names are ASCII
-- (names.rs), so LOWER() is the same on SQLite and PostgreSQL. A database that already holds
-- two names differing only in case stops here: rename one before upgrading.
ALTER TABLE users ADD COLUMN disabled_at BIGINT;
CREATE UNIQUE INDEX users_username_nocase ON users (LOWER(username));
CREATE UNIQUE INDEX repos_name_nocase ON repos (LOWER(owner), LOWER(name));
