-- 0013 (PostgreSQL twin of ../0013_report_reviews.sql): the weekly access review's sign-off.
-- One row per built week, one per finding of the week with the reviewer's decision, and the
-- grants, requests and people each finding rests on.

CREATE TABLE report_weeks (
    week            text COLLATE "C" PRIMARY KEY,   -- ISO label, e.g. 2026-W47
    built_at        text COLLATE "C" NOT NULL,      -- first build: a rebuild keeps the clock
    rebuilt_at      text COLLATE "C",
    manifest_sha256 text COLLATE "C",               -- SHA-256 of the pack's manifest.json
    pack_path       text COLLATE "C",
    signed_at       text COLLATE "C",
    signed_by       text COLLATE "C",
    overdue_at      text COLLATE "C",               -- when "not signed in time" was announced
    CHECK ((signed_at IS NULL) = (signed_by IS NULL))
);
CREATE INDEX report_weeks_unsigned ON report_weeks(built_at) WHERE signed_at IS NULL;

CREATE TABLE report_findings (
    week        text COLLATE "C" NOT NULL REFERENCES report_weeks(week),
    finding_id  text COLLATE "C" NOT NULL,          -- stable across weeks (carry-over)
    rule        text COLLATE "C" NOT NULL,
    severity    text COLLATE "C" NOT NULL,
    title       text COLLATE "C" NOT NULL,
    action      text COLLATE "C" NOT NULL,          -- the recommended action
    evidence    text COLLATE "C" NOT NULL,          -- JSON list: what it rests on (carry-over)
    subject     text COLLATE "C",                   -- the person it is about
    state       text COLLATE "C" NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'ok', 'flag')),
    note        text COLLATE "C",
    reviewed_by text COLLATE "C",
    reviewed_at text COLLATE "C",
    PRIMARY KEY (week, finding_id),
    CHECK ((state = 'open') = (reviewed_by IS NULL))
);
CREATE INDEX report_findings_id ON report_findings(finding_id);

CREATE TABLE report_finding_refs (
    week       text COLLATE "C" NOT NULL,
    finding_id text COLLATE "C" NOT NULL,
    kind       text COLLATE "C" NOT NULL CHECK (kind IN ('grant', 'request')),
    ref_id     bigint NOT NULL,
    PRIMARY KEY (week, finding_id, kind, ref_id),
    FOREIGN KEY (week, finding_id) REFERENCES report_findings(week, finding_id)
);

CREATE TABLE report_finding_people (
    week       text COLLATE "C" NOT NULL,
    finding_id text COLLATE "C" NOT NULL,
    person     text COLLATE "C" NOT NULL,
    PRIMARY KEY (week, finding_id, person),
    FOREIGN KEY (week, finding_id) REFERENCES report_findings(week, finding_id)
);
