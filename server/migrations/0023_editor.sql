-- VS Code in the browser (issue 18): the editor of an environment, chosen at create
-- (`terminal` or `vscode`), and a user's default for new environments (NULL = terminal).
ALTER TABLE environments ADD COLUMN editor TEXT NOT NULL DEFAULT 'terminal';
ALTER TABLE users ADD COLUMN editor TEXT;
