-- 0013: the weekly access review's sign-off. One row per built week (its pack, bound by the
-- SHA-256 of the pack's manifest.json, and who signed it), one per finding of the week with
-- the reviewer's decision, and the grants and requests each finding concerns (whoever gave
-- or approved one may not pass the finding), and the people who gave, approved or asked for
-- what it rests on (nor may they). Standard SQL, as on PostgreSQL.

CREATE TABLE report_weeks (
    week            TEXT PRIMARY KEY,                -- ISO label, e.g. 2026-W47
    built_at        TEXT NOT NULL,                   -- first build: a rebuild keeps the clock
    rebuilt_at      TEXT,
    manifest_sha256 TEXT,                            -- SHA-256 of the pack's manifest.json
    pack_path       TEXT,
    signed_at       TEXT,
    signed_by       TEXT,
    overdue_at      TEXT,                            -- when "not signed in time" was announced
    CHECK ((signed_at IS NULL) = (signed_by IS NULL))
);
CREATE INDEX report_weeks_unsigned ON report_weeks(built_at) WHERE signed_at IS NULL;

CREATE TABLE report_findings (
    week        TEXT NOT NULL REFERENCES report_weeks(week),
    finding_id  TEXT NOT NULL,                       -- stable across weeks (carry-over)
    rule        TEXT NOT NULL,
    severity    TEXT NOT NULL,
    title       TEXT NOT NULL,
    action      TEXT NOT NULL,                       -- the recommended action
    evidence    TEXT NOT NULL,                       -- JSON list: what it rests on (carry-over)
    subject     TEXT,                                -- the person it is about
    state       TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'ok', 'flag')),
    note        TEXT,
    reviewed_by TEXT,
    reviewed_at TEXT,
    PRIMARY KEY (week, finding_id),
    CHECK ((state = 'open') = (reviewed_by IS NULL))
);
CREATE INDEX report_findings_id ON report_findings(finding_id);

CREATE TABLE report_finding_refs (
    week       TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('grant', 'request')),
    ref_id     INTEGER NOT NULL,
    PRIMARY KEY (week, finding_id, kind, ref_id),
    FOREIGN KEY (week, finding_id) REFERENCES report_findings(week, finding_id)
);

CREATE TABLE report_finding_people (
    week       TEXT NOT NULL,
    finding_id TEXT NOT NULL,
    person     TEXT NOT NULL,
    PRIMARY KEY (week, finding_id, person),
    FOREIGN KEY (week, finding_id) REFERENCES report_findings(week, finding_id)
);
