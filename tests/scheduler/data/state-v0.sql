-- A state database written by the code before the schema version (main at 5bc3ac0,
-- scheduler/state.py): alerts and outbox rows of both kinds, one meta row of every key
-- family. tests/scheduler/test_state_schema.py opens it with the current code.
BEGIN TRANSACTION;
CREATE TABLE alerts (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    series TEXT NOT NULL,
    benchmark TEXT NOT NULL,
    status TEXT NOT NULL,
    good_commit TEXT NOT NULL DEFAULT '',
    bad_commit TEXT NOT NULL DEFAULT '',
    before REAL,
    after REAL,
    detail TEXT NOT NULL DEFAULT '{}',
    opened_at REAL NOT NULL,
    closed_at REAL
);
INSERT INTO "alerts" VALUES('paired|bench-quick|paired.server_cpu_per_message(tool=''echo'', point=''10x1'')|dddddddddddddddddddddddddddddddddddddddd','paired','bench-quick','paired.server_cpu_per_message(tool=''echo'', point=''10x1'')','open','cccccccccccccccccccccccccccccccccccccccc','dddddddddddddddddddddddddddddddddddddddd',26.4,28.5,'{"unit": "\u00b5s"}',1.79619462023376846317e+09,NULL);
INSERT INTO "alerts" VALUES('history|bench-quick|suite.Suite.track_latency|dddddddddddddddddddddddddddddddddddddddd','history','bench-quick','suite.Suite.track_latency','open','cccccccccccccccccccccccccccccccccccccccc','dddddddddddddddddddddddddddddddddddddddd',1.0,1.2,'{"unit": "seconds"}',1.79619462023899531359e+09,NULL);
CREATE TABLE commits (
    hash TEXT PRIMARY KEY,
    branch TEXT NOT NULL,
    author TEXT NOT NULL DEFAULT '',
    date INTEGER NOT NULL DEFAULT 0,
    subject TEXT NOT NULL DEFAULT '',
    first_seen REAL NOT NULL
);
INSERT INTO "commits" VALUES('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','main','dev',1700000000,'commit 0',1.79619462017276811604e+09);
INSERT INTO "commits" VALUES('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','main','dev',1700000001,'commit 1',1.79619462017390394206e+09);
INSERT INTO "commits" VALUES('cccccccccccccccccccccccccccccccccccccccc','main','dev',1700000002,'commit 2',1796194620.174);
INSERT INTO "commits" VALUES('dddddddddddddddddddddddddddddddddddddddd','main','dev',1700000003,'commit 3',1.79619462017402267456e+09);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO "meta" VALUES('polled:main','1764650000.5');
INSERT INTO "meta" VALUES('confirm-base:quick:cccccccccccccccccccccccccccccccccccccccc','bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb');
INSERT INTO "meta" VALUES('confirm-series:quick:cccccccccccccccccccccccccccccccccccccccc','["suite.Suite.track_latency"]');
INSERT INTO "meta" VALUES('confirmed:quick:dddddddddddddddddddddddddddddddddddddddd','1');
INSERT INTO "meta" VALUES('paired:dddddddddddddddddddddddddddddddddddddddd','[[{"point": "10x1", "ratio": 1.08, "higher": 10, "rounds": 10, "p": 0.001, "regression": true, "cpu_a": 26.4, "cpu_b": 28.5, "tool": "echo", "tpm_ratio": 1.01, "tpm_higher": 6, "tpm_p": 0.38, "tpm_regression": false}], [{"point": "10x1", "ratio": 1.08, "higher": 10, "rounds": 10, "p": 0.001, "regression": true, "cpu_a": 26.4, "cpu_b": 28.5, "tool": "echo", "tpm_ratio": 1.01, "tpm_higher": 6, "tpm_p": 0.38, "tpm_regression": false}]]');
INSERT INTO "meta" VALUES('paired:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','{"skipped": "no toolserver to compare"}');
INSERT INTO "meta" VALUES('batch:nightly','2026-12-01T02:00Z');
INSERT INTO "meta" VALUES('batch-heads:nightly','{"main": "dddddddddddddddddddddddddddddddddddddddd"}');
INSERT INTO "meta" VALUES('asv_pgid','4242');
INSERT INTO "meta" VALUES('paired_pgid','');
INSERT INTO "meta" VALUES('paired_dir','');
INSERT INTO "meta" VALUES('processed:bench-1/measure.dddddddd.1234','1');
CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    progress TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL,
    sent_at REAL
);
INSERT INTO "outbox" VALUES(1,'alert|paired|bench-quick|paired.server_cpu_per_message(tool=''echo'', point=''10x1'')|dddddddddddddddddddddddddddddddddddddddd|dddddddddddddddddddddddddddddddddddddddd','regression','{"kind": "regression", "text": "Performance regression (side by side with the parent)", "blocks": []}','pending',0,0.0,'','{}',1.79619462023388266566e+09,NULL);
INSERT INTO "outbox" VALUES(2,'alert|history|bench-quick|suite.Suite.track_latency|dddddddddddddddddddddddddddddddddddddddd|dddddddddddddddddddddddddddddddddddddddd','regression','{"kind": "regression", "text": "Performance regression (side by side with the parent)", "blocks": []}','pending',0,0.0,'','{}',1.79619462023905539509e+09,NULL);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    commit_hash TEXT NOT NULL,
    branch TEXT NOT NULL,
    profile TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    commit_date INTEGER NOT NULL DEFAULT 0,
    queued_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    log TEXT NOT NULL DEFAULT '',
    judged INTEGER NOT NULL DEFAULT 0,
    UNIQUE (commit_hash, profile)
);
INSERT INTO "runs" VALUES(1,'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa','main','quick','poll','done',200,1700000000,1.79619462017280697818e+09,1.79619462019723486901e+09,1.79619462020295882218e+09,1,'','',0);
INSERT INTO "runs" VALUES(2,'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb','main','quick','confirm-base','queued',360,1700000001,1.79619462020629262928e+09,1.79619462019331026072e+09,1.79619462019583606723e+09,0,'','',0);
INSERT INTO "runs" VALUES(3,'cccccccccccccccccccccccccccccccccccccccc','main','quick','confirm','queued',350,1700000002,1.79619462020645976069e+09,1.79619462018617606158e+09,1.79619462018845510485e+09,0,'','',0);
INSERT INTO "runs" VALUES(4,'dddddddddddddddddddddddddddddddddddddddd','main','quick','poll','done',200,1700000003,1.79619462017402887346e+09,1.79619462017494249347e+09,1.79619462018182039263e+09,1,'','',0);
CREATE INDEX runs_queue ON runs (status, priority, commit_date);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('runs',4);
INSERT INTO "sqlite_sequence" VALUES('outbox',2);
COMMIT;
