-- 0009: TOTP attempts refused while a user is locked or disabled are counted on the user's
-- row and audited in aggregate (the first, then the 10th, 100th, ...), not one row a guess.

ALTER TABLE users ADD COLUMN refused_attempts INTEGER NOT NULL DEFAULT 0;
