-- Warm pools of prebuilt environments (issue 19, docs/prebuilds.md "Warm pool"). Per
-- repository, `warm` environments of each prebuilding branch's current prebuild are created
-- and started ahead of time; `cove env create` claims one instead of creating. A pooled
-- environment is an ordinary environment row whose `pool_prebuild` names the prebuild it was
-- made from; claiming it clears the column (and sets owner, name, idle timeout).
ALTER TABLE prebuild_settings ADD COLUMN warm BIGINT NOT NULL DEFAULT 0;
ALTER TABLE environments ADD COLUMN pool_prebuild BIGINT;
CREATE INDEX environments_pool ON environments (pool_prebuild);
