-- 0015 (PostgreSQL twin of ../0015_daily_flags.sql): daily flags under the weekly review.
-- daily_flags remembers every finding sent, by its stable id, so none is sent twice;
-- daily_checks remembers how far each local day was read.

CREATE TABLE daily_flags (
    finding_id      text COLLATE "C" PRIMARY KEY,   -- model.Finding.id (stable across weeks)
    day             text COLLATE "C" NOT NULL,      -- the local day checked, YYYY-MM-DD
    rule            text COLLATE "C" NOT NULL,
    severity        text COLLATE "C" NOT NULL,
    flagged_at      text COLLATE "C" NOT NULL,
    notification_id bigint REFERENCES notifications(id)  -- NULL: no webhook configured
);
CREATE INDEX daily_flags_day ON daily_flags(day);

CREATE TABLE daily_checks (
    day             text COLLATE "C" PRIMARY KEY,   -- the local day, YYYY-MM-DD
    checked_until   text COLLATE "C" NOT NULL,      -- read up to this instant (UTC)
    complete        bigint NOT NULL DEFAULT 0,      -- 1: read after the day (and its grace) ended
    flagged         bigint NOT NULL DEFAULT 0       -- findings sent for it so far
);
