"""Schema migrations, applied in order; PRAGMA user_version records how far a database is."""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: sessions and their append-only event log
    """
    CREATE TABLE sessions (
        id         TEXT PRIMARY KEY,
        agent      TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE events (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL REFERENCES sessions(id),
        kind       TEXT NOT NULL,
        reply_to   INTEGER REFERENCES events(id),
        data       TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX events_by_session ON events(session_id, id);
    CREATE INDEX events_by_reply ON events(reply_to) WHERE reply_to IS NOT NULL;
    """,
    # 2: sandboxes (recreated from these records after a restart) and the audit log
    """
    CREATE TABLE sandboxes (
        name        TEXT PRIMARY KEY,
        policy      TEXT NOT NULL,
        policy_hash TEXT NOT NULL,
        workspace   TEXT NOT NULL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE audit (
        id             INTEGER PRIMARY KEY AUTOINCREMENT,
        ts             REAL NOT NULL,
        actor          TEXT NOT NULL,
        sandbox        TEXT,
        action         TEXT NOT NULL,
        argv           TEXT,
        cwd            TEXT,
        policy_version TEXT,
        rule           TEXT,
        outcome        TEXT NOT NULL,
        exit_code      INTEGER,
        duration_ms    REAL,
        bytes_out      INTEGER,
        killed_by      TEXT,
        detail         TEXT
    );
    CREATE INDEX audit_by_sandbox ON audit(sandbox, id);
    """,
    # 3: whether a sandbox's policy follows the policy file (its network rules reload live)
    """
    ALTER TABLE sandboxes ADD COLUMN follows_file INTEGER NOT NULL DEFAULT 1;
    """,
    # 4: usage of every model call, for `hermitcrab usage` and spend caps
    """
    CREATE TABLE usage (
        id                INTEGER PRIMARY KEY AUTOINCREMENT,
        ts                REAL NOT NULL,
        day               TEXT NOT NULL,
        agent             TEXT NOT NULL,
        session           TEXT,
        model             TEXT NOT NULL,
        prompt_tokens     INTEGER NOT NULL,
        completion_tokens INTEGER NOT NULL,
        latency_ms        REAL NOT NULL,
        cost_usd          REAL NOT NULL
    );
    CREATE INDEX usage_by_day ON usage(day, agent);
    """,
    # 5: the agent a sandbox works for (its model route through inference.local)
    """
    ALTER TABLE sandboxes ADD COLUMN agent TEXT;
    """,
    # 6: the agent acts: durable jobs, taint marks on workspace files, the approval inbox
    """
    CREATE TABLE jobs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        agent      TEXT NOT NULL,
        session_id TEXT NOT NULL,
        text       TEXT NOT NULL,
        run_at     REAL,
        cron       TEXT,
        tainted    INTEGER NOT NULL DEFAULT 0,
        created_by TEXT NOT NULL,
        created_at REAL NOT NULL,
        state      TEXT NOT NULL DEFAULT 'scheduled'
    );
    CREATE TABLE file_marks (
        agent      TEXT NOT NULL,
        path       TEXT NOT NULL,
        tainted    INTEGER NOT NULL,
        source     TEXT,
        session_id TEXT,
        mtime_ns   INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (agent, path)
    );
    CREATE TABLE approvals (
        id          TEXT PRIMARY KEY,
        kind        TEXT NOT NULL,
        sandbox     TEXT,
        session_id  TEXT,
        subject     TEXT NOT NULL,
        state       TEXT NOT NULL,
        always      INTEGER NOT NULL DEFAULT 0,
        decided_by  TEXT,
        reason      TEXT,
        created_at  REAL NOT NULL,
        expires_at  REAL NOT NULL,
        decided_at  REAL
    );
    CREATE INDEX approvals_by_state ON approvals(state, created_at);
    """,
    # 7: repeated decisions are one row: how many, and when the last one was
    """
    ALTER TABLE audit ADD COLUMN repeats INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE audit ADD COLUMN last_ts REAL;
    """,
    # 8: the audit log is a hash chain (store/chain.py); the anchor keeps it checkable past pruning
    """
    ALTER TABLE audit ADD COLUMN hash TEXT;
    ALTER TABLE audit ADD COLUMN prev_hash TEXT;
    CREATE TABLE audit_anchor (
        id         INTEGER PRIMARY KEY CHECK (id = 1),
        hash       TEXT NOT NULL,
        through_id INTEGER NOT NULL
    );
    """,
    # 9: inbound messages carry their source's id (a channel's, an API client's, a job
    # slot's) and come in once; the scheduler's jobs get their rules and a run history
    """
    ALTER TABLE events ADD COLUMN source_id TEXT;
    CREATE UNIQUE INDEX events_by_source ON events(session_id, source_id) WHERE source_id IS NOT NULL;
    ALTER TABLE jobs ADD COLUMN name TEXT;
    ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'message';
    ALTER TABLE jobs ADD COLUMN every_s REAL;
    ALTER TABLE jobs ADD COLUMN tz TEXT;
    ALTER TABLE jobs ADD COLUMN catch_up TEXT NOT NULL DEFAULT 'once';
    ALTER TABLE jobs ADD COLUMN catch_up_max INTEGER NOT NULL DEFAULT 10;
    ALTER TABLE jobs ADD COLUMN model TEXT;
    ALTER TABLE jobs ADD COLUMN last_slot REAL;
    ALTER TABLE jobs ADD COLUMN next_due REAL;
    ALTER TABLE jobs ADD COLUMN runs INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE job_runs (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id     INTEGER NOT NULL,
        slot       REAL NOT NULL,
        due_at     REAL NOT NULL,
        ran_at     REAL NOT NULL,
        outcome    TEXT NOT NULL,
        session_id TEXT,
        message_id INTEGER,
        missed     INTEGER NOT NULL DEFAULT 0,
        detail     TEXT,
        UNIQUE (job_id, slot)
    );
    CREATE INDEX job_runs_by_time ON job_runs(ran_at);
    """,
    # 10: the memory index (memory/): each agent's memory files, line by line, and the
    # stamp of each file as indexed
    """
    CREATE TABLE memory_files (
        agent      TEXT NOT NULL,
        path       TEXT NOT NULL,
        mtime_ns   INTEGER NOT NULL,
        size       INTEGER NOT NULL,
        indexed_at REAL NOT NULL,
        PRIMARY KEY (agent, path)
    );
    CREATE VIRTUAL TABLE memory_fts USING fts5(
        text, heading UNINDEXED, agent UNINDEXED, path UNINDEXED, line UNINDEXED,
        tokenize = 'porter unicode61'
    );
    """,
    # 11: memory embeddings: a vector per indexed line, and which model made a file's
    # vectors ('' for none: BM25 alone), so that a file is embedded again when that changes
    """
    ALTER TABLE memory_files ADD COLUMN embedded_by TEXT NOT NULL DEFAULT '';
    CREATE TABLE memory_vectors (
        agent  TEXT NOT NULL,
        path   TEXT NOT NULL,
        line   INTEGER NOT NULL,
        digest BLOB NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (agent, path, line)
    ) WITHOUT ROWID;
    CREATE INDEX memory_vectors_by_digest ON memory_vectors(agent, digest);
    """,
    # 12: who may talk to the agent on a chat channel: a stranger's pairing code, then the
    # owner's decision (owner or guest), until revoked
    """
    CREATE TABLE channel_senders (
        channel    TEXT NOT NULL,
        sender     TEXT NOT NULL,
        name       TEXT NOT NULL DEFAULT '',
        code       TEXT NOT NULL,
        state      TEXT NOT NULL,
        role       TEXT,
        asked_at   REAL NOT NULL,
        expires_at REAL NOT NULL,
        decided_at REAL,
        decided_by TEXT,
        PRIMARY KEY (channel, sender)
    );
    CREATE UNIQUE INDEX channel_senders_by_code ON channel_senders(code);
    """,
    # 13: where a channel's reading of its service stands (a Matrix /sync token), so that a
    # restart goes on from there: nothing missed, nothing from before read again
    """
    CREATE TABLE channel_cursors (
        channel    TEXT PRIMARY KEY,
        cursor     TEXT NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
)
