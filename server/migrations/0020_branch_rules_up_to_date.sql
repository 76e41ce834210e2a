-- Branch rules (issue 15): a rule may require a pull request's source branch to contain the
-- destination's current head before the merge ("branch out of date").
ALTER TABLE branch_rules ADD COLUMN require_up_to_date BIGINT NOT NULL DEFAULT 0;
