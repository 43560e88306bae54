BEGIN TRANSACTION;
CREATE TABLE canary_decisions (
    version INTEGER PRIMARY KEY REFERENCES releases(version),
    decision TEXT NOT NULL CHECK (decision IN ('promote', 'rollback')),
    device_id TEXT NOT NULL,
    change_id INTEGER NOT NULL REFERENCES release_changes(id),
    decided_at REAL NOT NULL
);
CREATE TABLE canary_evaluations (
    version INTEGER NOT NULL REFERENCES releases(version),
    device_id TEXT NOT NULL REFERENCES devices(id),
    baseline_version INTEGER NOT NULL,
    metric TEXT NOT NULL,
    candidate_loss REAL NOT NULL,
    candidate_metric REAL NOT NULL,
    baseline_loss REAL NOT NULL,
    baseline_metric REAL NOT NULL,
    num_examples INTEGER NOT NULL,
    latency_ms REAL NOT NULL,
    using_model TEXT NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (version, device_id)
);
CREATE TABLE canary_parity (
    version INTEGER NOT NULL,
    device_id TEXT NOT NULL,
    runtime TEXT NOT NULL,
    max_abs_error REAL,
    top1_agreement REAL,
    samples INTEGER,
    PRIMARY KEY (version, device_id),
    FOREIGN KEY (version, device_id) REFERENCES canary_evaluations(version, device_id)
);
CREATE TABLE checkpoints (
    id TEXT PRIMARY KEY,
    round_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    created_at REAL NOT NULL
);
INSERT INTO "checkpoints" VALUES('0d387e5bdbeda831f9d426065ab35a57a966c65f04f234af1e75a97abfc73d29',0,'0d387e5bdbeda831f9d426065ab35a57a966c65f04f234af1e75a97abfc73d29.safetensors',240,1.79666029207901048665e+09);
INSERT INTO "checkpoints" VALUES('1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7',1,'1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7.safetensors',240,1.79666029261907196049e+09);
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    token_hash TEXT NOT NULL UNIQUE,
    platform TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    idle INTEGER NOT NULL DEFAULT 0,
    charging INTEGER NOT NULL DEFAULT 0,
    unmetered INTEGER NOT NULL DEFAULT 0,
    participations INTEGER NOT NULL DEFAULT 0,
    last_asked REAL NOT NULL DEFAULT 0,
    enrol_request TEXT UNIQUE,
    subject TEXT
);
INSERT INTO "devices" VALUES('d-fed3a9a122519c58','ff25745efc10d06464d1cd5f09f29975ecb47a827383308b34160deaa5218d4b','test',1.79666029229482460019e+09,1.79666029263964939118e+09,0,0,0,1,1.79666029263964939118e+09,NULL,NULL);
INSERT INTO "devices" VALUES('d-941c2fb90f437a90','451a2dccd3303c18f7b9b7b9e7601ada083cf8188f944b8779268a761829db71','test',1.79666029240846800802e+09,1.79666029247392416002e+09,0,0,0,1,1.79666029247392416002e+09,NULL,NULL);
INSERT INTO "devices" VALUES('d-2661aec4bd385900','8f1fc047d8fb75a1abe9b789871c943e1c8060d4558e76c6310c9027a10f3014','test',1.79666029244627785681e+09,1.79666029248146772389e+09,0,0,0,1,1.79666029248146772389e+09,NULL,NULL);
CREATE TABLE events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at REAL NOT NULL
);
INSERT INTO "events" VALUES(1,'round_opened','{"round_id": 1, "base_checkpoint": "0d387e5bdbeda831f9d426065ab35a57a966c65f04f234af1e75a97abfc73d29"}',1.79666029220631909366e+09);
INSERT INTO "events" VALUES(2,'round_closing','{"round_id": 1, "updates": 3}',1.79666029258476448058e+09);
INSERT INTO "events" VALUES(3,'round_closed','{"round_id": 1, "checkpoint": "1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7", "metrics": {"updates": 3, "examples": 3, "mean_update_norm": 7.348469228349534, "median_update_norm": 4.898979485566356, "max_device_share": 0.3333333333333333, "aggregation_seconds": 0.0007324760008486919, "strategy": "fedavg", "num_updates": 3.0, "total_weight": 3.0, "delta_norm": 7.3484692283495345, "step_norm": 7.3484692283495345, "device_loss": 1.0}}',1.79666029261954760549e+09);
INSERT INTO "events" VALUES(4,'round_opened','{"round_id": 2, "base_checkpoint": "1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7"}',1.79666029261990666389e+09);
CREATE TABLE health_reports (
    version INTEGER NOT NULL REFERENCES releases(version),
    device_id TEXT NOT NULL REFERENCES devices(id),
    win INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    metric TEXT NOT NULL,
    loss REAL NOT NULL,
    value REAL NOT NULL,
    num_examples INTEGER NOT NULL,
    histogram TEXT,
    quantiles TEXT,
    received_at REAL NOT NULL,
    PRIMARY KEY (version, device_id, win)
);
CREATE TABLE health_windows (
    version INTEGER NOT NULL REFERENCES releases(version),
    runtime TEXT NOT NULL,
    win INTEGER NOT NULL,
    start REAL NOT NULL,
    metric TEXT NOT NULL,
    devices INTEGER NOT NULL,
    loss REAL NOT NULL,
    value REAL NOT NULL,
    distribution TEXT NOT NULL,
    baseline INTEGER NOT NULL,
    distance REAL,
    drop_ REAL,
    voters INTEGER NOT NULL,
    votes INTEGER NOT NULL,
    alert INTEGER NOT NULL,
    PRIMARY KEY (version, runtime, win)
);
CREATE TABLE release_changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    version INTEGER REFERENCES releases(version),
    why TEXT,
    details TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE releases (
    version INTEGER PRIMARY KEY,
    bundle_id TEXT UNIQUE,
    name TEXT NOT NULL,
    source TEXT NOT NULL,
    state TEXT NOT NULL
        CHECK (state IN ('building', 'failed', 'canary', 'live', 'rolled_back', 'retired')),
    percent REAL NOT NULL DEFAULT 0,
    notes TEXT NOT NULL DEFAULT '',
    forced_reason TEXT,
    created_at REAL NOT NULL,
    created_by TEXT NOT NULL,
    error TEXT
);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL
        CHECK (state IN ('open', 'closing', 'closed', 'failed', 'abandoned')),
    base_checkpoint TEXT NOT NULL REFERENCES checkpoints(id),
    config TEXT NOT NULL,
    opened_at REAL NOT NULL,
    deadline_at REAL NOT NULL,
    closed_at REAL,
    result_checkpoint TEXT REFERENCES checkpoints(id),
    metrics TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO "rounds" VALUES(1,'closed','0d387e5bdbeda831f9d426065ab35a57a966c65f04f234af1e75a97abfc73d29','{"local_epochs": 1, "batch_size": 16, "learning_rate": 0.05, "deadline_s": 300.0, "target_participants": 3, "min_participants": 3, "over_selection": 1.3, "require_idle": false, "require_charging": false, "require_unmetered": false, "max_update_norm": 24.49489742783178}',1.79666029220609474179e+09,1.79666059220609474183e+09,1.79666029261921572687e+09,'1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7','{"updates": 3, "examples": 3, "mean_update_norm": 7.348469228349534, "median_update_norm": 4.898979485566356, "max_device_share": 0.3333333333333333, "aggregation_seconds": 0.0007324760008486919, "strategy": "fedavg", "num_updates": 3.0, "total_weight": 3.0, "delta_norm": 7.3484692283495345, "step_norm": 7.3484692283495345, "device_loss": 1.0}');
INSERT INTO "rounds" VALUES(2,'open','1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7','{"local_epochs": 1, "batch_size": 16, "learning_rate": 0.05, "deadline_s": 300.0, "target_participants": 3, "min_participants": 3, "over_selection": 1.3, "require_idle": false, "require_charging": false, "require_unmetered": false, "max_update_norm": 4.898979485566356}',1.79666029261977910997e+09,1.79666059261977910993e+09,NULL,NULL,'{}');
CREATE TABLE selections (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    selected_at REAL NOT NULL,
    PRIMARY KEY (round_id, device_id)
);
INSERT INTO "selections" VALUES(1,'d-fed3a9a122519c58',1.79666029247053265572e+09);
INSERT INTO "selections" VALUES(1,'d-941c2fb90f437a90',1.79666029247392416002e+09);
INSERT INTO "selections" VALUES(1,'d-2661aec4bd385900',1.79666029248146772389e+09);
INSERT INTO "selections" VALUES(2,'d-fed3a9a122519c58',1.79666029263964939118e+09);
CREATE TABLE server_state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO "server_state" VALUES('device_count','3');
INSERT INTO "server_state" VALUES('model','{"name": "tiny", "source": "/tmp/tmpp_s3gtjt/tiny.keras", "weights": [{"name": "dense/kernel", "shape": [2, 2], "dtype": "float32"}, {"name": "dense/bias", "shape": [2], "dtype": "float32"}], "bundle": null}');
INSERT INTO "server_state" VALUES('current_checkpoint','1d2141b1603ee051563ee98e97cb48234ebe4fe7f055b06bc41af91e0541e0e7');
INSERT INTO "server_state" VALUES('canary_slice_key','45f5638c12bd3658207b5231d53db7c88120f0c09ba4ed79a0cd693fc400689f');
CREATE TABLE updates (
    round_id INTEGER NOT NULL REFERENCES rounds(id),
    device_id TEXT NOT NULL REFERENCES devices(id),
    digest TEXT NOT NULL,
    num_examples INTEGER NOT NULL,
    norm REAL NOT NULL,
    clipped INTEGER NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    metrics TEXT NOT NULL DEFAULT '{}',
    received_at REAL NOT NULL,
    PRIMARY KEY (round_id, device_id)
);
INSERT INTO "updates" VALUES(1,'d-fed3a9a122519c58','bc7278baf98ee2a75965bcff2b52766efa1e4c614cdeb3c7d9c72c67d81b73be',1,2.44948974278317788133e+00,0,'r000001/d-fed3a9a122519c58-bc7278baf98ee2a7.safetensors',368,'{"loss": 1.0}',1.79666029250911688797e+09);
INSERT INTO "updates" VALUES(1,'d-941c2fb90f437a90','0cdc2e5de8de313e1614522f9320283604a1e8ef8b4696886cbf5d00183bcaf4',1,4.89897948556635576267e+00,0,'r000001/d-941c2fb90f437a90-0cdc2e5de8de313e.safetensors',368,'{"loss": 1.0}',1.79666029253374862672e+09);
INSERT INTO "updates" VALUES(1,'d-2661aec4bd385900','33b76ee3efd1f0a25d830c8e1bf68e2207d5f4e74be98d4e31b42cf58b23fcc6',1,1.46969384566990690643e+01,0,'r000001/d-2661aec4bd385900-33b76ee3efd1f0a2.safetensors',368,'{"loss": 1.0}',1.79666029257131052015e+09);
INSERT INTO "updates" VALUES(2,'d-fed3a9a122519c58','b438074157d83e9410c2462c4bf21db9fa8764ccb65274c174e090c0e9945c3a',1,7.34846922834953453218e+00,1,'r000002/d-fed3a9a122519c58-b438074157d83e94.safetensors',368,'{"loss": 1.0}',1.7966602926552963257e+09);
CREATE UNIQUE INDEX devices_by_subject ON devices(subject);
CREATE INDEX devices_by_last_seen ON devices(last_seen);
CREATE UNIQUE INDEX one_open_round ON rounds(state) WHERE state = 'open';
CREATE UNIQUE INDEX one_closing_round ON rounds(state) WHERE state = 'closing';
CREATE INDEX updates_by_digest ON updates(round_id, digest);
CREATE UNIQUE INDEX one_live_release ON releases(state) WHERE state = 'live';
CREATE UNIQUE INDEX one_canary_release ON releases(state) WHERE state = 'canary';
CREATE INDEX health_reports_by_window ON health_reports(version, win);
DELETE FROM "sqlite_sequence";
INSERT INTO "sqlite_sequence" VALUES('events',4);
COMMIT;
PRAGMA user_version = 3;
