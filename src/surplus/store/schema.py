"""The store's schema, as migrations: an ordered list, each a tuple of SQL statements.

Migration ``n`` (counting from 1) takes a database from ``PRAGMA user_version`` ``n - 1`` to
``n``; ``db.py`` runs each in one transaction together with its version bump. A released
migration is never edited: a change of schema is the next migration.

Times are epoch milliseconds, UTC (``*_ms``). The rollups are kept by triggers on ``sample``,
so every writer, and only a sample that was really inserted, updates them.
"""

from __future__ import annotations

# "SURP" in the database header: a file with another application id is not ours to migrate
APPLICATION_ID = 0x53555250

# rollup bucket widths, in seconds: the rows migration 1 puts in ``rollup_level``
LEVELS_S = (60, 900, 86_400)

_SERIES = """
CREATE TABLE series (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    quantity TEXT NOT NULL,
    unit TEXT NOT NULL,
    pruned_before_ms INTEGER,  -- raw samples before this were pruned; NULL: none yet
    UNIQUE (device, quantity)
) STRICT
"""

_SAMPLE = """
CREATE TABLE sample (
    series_id INTEGER NOT NULL REFERENCES series (id),
    ts_ms INTEGER NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (series_id, ts_ms)
) STRICT, WITHOUT ROWID
"""

_ROLLUP = """
CREATE TABLE rollup (
    series_id INTEGER NOT NULL REFERENCES series (id),
    step_s INTEGER NOT NULL,
    bucket_ms INTEGER NOT NULL,  -- the bucket's start, a multiple of step_s * 1000
    n INTEGER NOT NULL,
    total REAL NOT NULL,
    low REAL NOT NULL,
    high REAL NOT NULL,
    last_ms INTEGER NOT NULL,  -- time of the bucket's newest sample
    last_value REAL NOT NULL,
    PRIMARY KEY (series_id, step_s, bucket_ms)
) STRICT, WITHOUT ROWID
"""

# A sample older than its series' pruned horizon is already counted in the rollups, but its
# raw copy is gone, so INSERT OR IGNORE would not see the duplicate.
_SAMPLE_PRUNED = """
CREATE TRIGGER sample_pruned BEFORE INSERT ON sample
WHEN NEW.ts_ms < (SELECT pruned_before_ms FROM series WHERE id = NEW.series_id)
BEGIN
    SELECT RAISE(IGNORE);
END
"""

# The bucket start floors toward minus infinity (SQLite's % truncates toward zero).
_SAMPLE_ROLLUP = """
CREATE TRIGGER sample_rollup AFTER INSERT ON sample
BEGIN
    INSERT INTO rollup (series_id, step_s, bucket_ms, n, total, low, high, last_ms, last_value)
    SELECT
        NEW.series_id,
        level.step_s,
        NEW.ts_ms - ((NEW.ts_ms % (level.step_s * 1000)) + level.step_s * 1000)
            % (level.step_s * 1000),
        1, NEW.value, NEW.value, NEW.value, NEW.ts_ms, NEW.value
    FROM rollup_level AS level
    WHERE true
    ON CONFLICT (series_id, step_s, bucket_ms) DO UPDATE SET
        n = n + 1,
        total = total + excluded.total,
        low = min(low, excluded.low),
        high = max(high, excluded.high),
        last_value = CASE WHEN excluded.last_ms >= last_ms
            THEN excluded.last_value ELSE last_value END,
        last_ms = max(last_ms, excluded.last_ms);
END
"""

_DECISION = """
CREATE TABLE decision (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    loadpoint TEXT,  -- NULL: a site-wide command (the home battery)
    command TEXT NOT NULL,  -- JSON object
    reason TEXT NOT NULL,
    result TEXT NOT NULL
) STRICT
"""

_CHARGING_SESSION = """
CREATE TABLE charging_session (
    id INTEGER PRIMARY KEY,
    loadpoint TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    last_ms INTEGER NOT NULL,  -- the latest energy increment (or the start)
    end_ms INTEGER,  -- NULL while the session is open
    solar_wh REAL NOT NULL DEFAULT 0,
    battery_wh REAL NOT NULL DEFAULT 0,
    grid_wh REAL NOT NULL DEFAULT 0,
    cost_eur REAL NOT NULL DEFAULT 0,
    CHECK (last_ms >= start_ms AND (end_ms IS NULL OR end_ms >= start_ms))
) STRICT
"""

# the certificate fingerprint trusted for a device whose config names none
_DEVICE_PIN = """
CREATE TABLE device_pin (
    device TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    pinned_ms INTEGER NOT NULL
) STRICT
"""

# a key that pushed readings may carry (``store.push``): only its SHA-256 is kept
_PUSH_KEY = """
CREATE TABLE push_key (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    key_sha256 BLOB NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    revoked_ms INTEGER,  -- NULL while the key is valid
    CHECK (length(key_sha256) = 32)
) STRICT
"""

# an accepted push; the payload is the JSON that was sent, less its key
_PUSH_MESSAGE = """
CREATE TABLE push_message (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    tsms INTEGER,  -- the time the source gave, if any
    payload TEXT NOT NULL,  -- JSON object
    flags TEXT NOT NULL,  -- JSON array of strings
    status INTEGER NOT NULL  -- the HTTP status answered
) STRICT
"""

MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        _SERIES,
        _SAMPLE,
        "CREATE TABLE rollup_level (step_s INTEGER PRIMARY KEY) STRICT",
        "INSERT INTO rollup_level (step_s) VALUES (60), (900), (86400)",
        _ROLLUP,
        _SAMPLE_PRUNED,
        _SAMPLE_ROLLUP,
        _DECISION,
        "CREATE INDEX decision_time ON decision (ts_ms)",
        _CHARGING_SESSION,
        # at most one open session per loadpoint: a restart continues it, never duplicates it
        """CREATE UNIQUE INDEX charging_session_open ON charging_session (loadpoint)
        WHERE end_ms IS NULL""",
        "CREATE INDEX charging_session_start ON charging_session (start_ms)",
    ),
    (_DEVICE_PIN,),
    (
        _PUSH_KEY,
        # one valid key per source: a second is refused until the first is revoked
        "CREATE UNIQUE INDEX push_key_valid ON push_key (source) WHERE revoked_ms IS NULL",
        _PUSH_MESSAGE,
        "CREATE INDEX push_message_source ON push_message (source, received_ms)",
    ),
    (
        # OCPP charge points allowed to connect: the key only as its SHA-256 (store/chargers.py)
        """CREATE TABLE ocpp_charger (
            id TEXT PRIMARY KEY,
            key_sha256 TEXT NOT NULL,
            created_ms INTEGER NOT NULL,
            revoked_ms INTEGER  -- NULL while the charge point may connect
        ) STRICT""",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)
