-- Personal settings (issue 18): a user's dotfiles repository (an http(s) git URL or a Cove
-- repository `owner/name`), cloned into every new environment's home.
ALTER TABLE users ADD COLUMN dotfiles TEXT;
-- Outdated environments (issue 18): the git blob id of the branch's devfile an environment was
-- created (or last updated) from; when the branch's devfile moves on, the environment is
-- outdated. NULL for rows from before this migration (never reported outdated).
ALTER TABLE environments ADD COLUMN devfile_upstream TEXT;
-- The applied devfile an update replaced (its blob id): a workspace devfile still equal to it
-- is behind the branch, not edited, so it does not make the environment "restart required".
ALTER TABLE environments ADD COLUMN devfile_behind TEXT;
