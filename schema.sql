-- sse-fcgi schema (SPEC §2). Apply with:  sqlite3 events.db < schema.sql
--
-- The database is both the history and the bus: producers INSERT rows, sse-fcgi reads them
-- read-only and streams them. Every statement is idempotent, so applying this file to an
-- existing database is safe.
--
-- Choices written down here (README "Publishing events" repeats them):
-- * An event for a session that does not exist is REFUSED (no auto-create): a typo in a
--   session id must not silently open a new, unwatched session. Create the session first:
--       INSERT OR IGNORE INTO sessions(id) VALUES ('demo');
-- * An event for a closed session is refused: closed_at set means no more events (SPEC §2).
-- * session_id NULL is an app-wide event for /api/events/global.
-- * Events are append-only: UPDATE is refused; DELETE (pruning) is allowed and recorded in
--   `pruned` so that a resume from before the pruned range is reported (SPEC §4.3).

PRAGMA journal_mode = WAL;
-- user_version is the schema version that /api/health reports and the responder checks.
PRAGMA user_version = 1;

CREATE TABLE IF NOT EXISTS sessions (
    id         TEXT PRIMARY KEY NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    closed_at  TEXT
);

CREATE TABLE IF NOT EXISTS events (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,  -- SSE id and resume cursor; only grows
    session_id     TEXT,                               -- NULL: global channel
    type           TEXT NOT NULL,
    stream_id      TEXT,
    node_id        TEXT,
    execution_id   TEXT,
    data           TEXT NOT NULL DEFAULT '{}',         -- JSON, embedded as JSON in the frame
    timestamp      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    correlation_id TEXT,
    colony_id      TEXT,
    run_id         TEXT
);

-- Session stream, replay window and global channel (session_id IS NULL): range scans on
-- (session_id, id). Worker stream: range scan on (stream_id, id).
CREATE INDEX IF NOT EXISTS events_session_id ON events(session_id, id);
CREATE INDEX IF NOT EXISTS events_stream_id ON events(stream_id, id);

-- The filter policy is data (SPEC §2); change it with the sqlite3 CLI, no rebuild needed.
-- A running stream reads it when it starts.
CREATE TABLE IF NOT EXISTS event_types (
    name                TEXT PRIMARY KEY NOT NULL,
    streamed_by_default INTEGER NOT NULL DEFAULT 0 CHECK (streamed_by_default IN (0, 1)),
    replayed            INTEGER NOT NULL DEFAULT 0 CHECK (replayed IN (0, 1)),
    critical            INTEGER NOT NULL DEFAULT 0 CHECK (critical IN (0, 1)),
    worker_fanin        INTEGER NOT NULL DEFAULT 0 CHECK (worker_fanin IN (0, 1))
);

-- Highest pruned event id per scope ('' = global channel), kept by the trigger below.
CREATE TABLE IF NOT EXISTS pruned (
    scope      TEXT PRIMARY KEY NOT NULL,
    through_id INTEGER NOT NULL
);

-- Read tokens, for SSE_AUTH=token. The producer stores a random salt and the lower-case
-- hex SHA-256 of salt || token, never the token itself. scope is what the token opens:
-- 'session:<id>', 'worker:<id>' or 'global'; the prefix keeps a session named 'worker:w1'
-- apart from the worker w1. A scope may have several tokens (rotation: add the new one,
-- delete the old one later).
CREATE TABLE IF NOT EXISTS read_tokens (
    scope      TEXT NOT NULL,
    salt       TEXT NOT NULL CHECK (length(salt) BETWEEN 16 AND 128),
    hash       TEXT NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS read_tokens_scope ON read_tokens(scope);

-- ---------------------------------------------------------------------------------------
-- INSERT-time refusal of bad rows, each with a message that names the column and the rule.
-- deploy/postgresql/schema.sql refuses the same rows in the same words (suite pg_schema).
-- Every column a stream loads has a byte limit, so that no producer can make the responder
-- hold more than a bounded row (a 1 MiB timestamp made 600 rows cost 630 MB). The limits
-- are also store/event.h's EVENT_*_MAX; the schema suite checks that both agree:
--   data 1048576 bytes (1 MiB); type, stream_id, event_types.name 128; node_id,
--   execution_id, correlation_id, colony_id, run_id 256; timestamp 64 (text or number).
-- `control` is the GLOB pattern of the ASCII control characters char(1..31, 127); a NUL is
-- looked for in the bytes (instr), since GLOB stops at one.

CREATE TRIGGER IF NOT EXISTS sessions_check_id BEFORE INSERT ON sessions
WHEN typeof(NEW.id) <> 'text' OR length(CAST(NEW.id AS BLOB)) NOT BETWEEN 1 AND 128
     OR NEW.id GLOB '*[^A-Za-z0-9._:-]*'
BEGIN
    SELECT RAISE(ABORT, 'sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -');
END;

-- Dropped and created again, in one transaction, so that applying this file to a database
-- made with an older one replaces the older checks: CREATE TRIGGER IF NOT EXISTS would keep
-- them (schema.sql before these limits bounded neither timestamp nor the ids). The cheap
-- length checks come before json_valid, which reads all of data.
BEGIN;
DROP TRIGGER IF EXISTS events_check_insert;
CREATE TRIGGER events_check_insert BEFORE INSERT ON events
BEGIN
    SELECT CASE
    WHEN NEW.type IS NULL OR typeof(NEW.type) <> 'text' OR length(NEW.type) = 0 THEN
        RAISE(ABORT, 'events.type must be a non-empty text')
    WHEN length(CAST(NEW.type AS BLOB)) > 128 THEN
        RAISE(ABORT, 'events.type must be at most 128 bytes')
    WHEN NEW.type GLOB control OR instr(CAST(NEW.type AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.type must not contain control characters')
    WHEN length(CAST(NEW.stream_id AS BLOB)) > 128 THEN
        RAISE(ABORT, 'events.stream_id must be at most 128 bytes')
    WHEN NEW.stream_id GLOB control OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.stream_id must not contain control characters')
    WHEN length(CAST(NEW.node_id AS BLOB)) > 256 THEN
        RAISE(ABORT, 'events.node_id must be at most 256 bytes')
    WHEN NEW.node_id GLOB control OR instr(CAST(NEW.node_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.node_id must not contain control characters')
    WHEN length(CAST(NEW.execution_id AS BLOB)) > 256 THEN
        RAISE(ABORT, 'events.execution_id must be at most 256 bytes')
    WHEN NEW.execution_id GLOB control OR instr(CAST(NEW.execution_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.execution_id must not contain control characters')
    WHEN length(CAST(NEW.correlation_id AS BLOB)) > 256 THEN
        RAISE(ABORT, 'events.correlation_id must be at most 256 bytes')
    WHEN NEW.correlation_id GLOB control
         OR instr(CAST(NEW.correlation_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.correlation_id must not contain control characters')
    WHEN length(CAST(NEW.colony_id AS BLOB)) > 256 THEN
        RAISE(ABORT, 'events.colony_id must be at most 256 bytes')
    WHEN NEW.colony_id GLOB control OR instr(CAST(NEW.colony_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.colony_id must not contain control characters')
    WHEN length(CAST(NEW.run_id AS BLOB)) > 256 THEN
        RAISE(ABORT, 'events.run_id must be at most 256 bytes')
    WHEN NEW.run_id GLOB control OR instr(CAST(NEW.run_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.run_id must not contain control characters')
    WHEN typeof(NEW.timestamp) NOT IN ('text', 'integer', 'real') THEN
        RAISE(ABORT, 'events.timestamp must be text or a number')
    WHEN length(CAST(NEW.timestamp AS BLOB)) > 64 THEN
        RAISE(ABORT, 'events.timestamp must be at most 64 bytes')
    WHEN length(CAST(NEW.data AS BLOB)) > 1048576 THEN
        RAISE(ABORT, 'events.data must be at most 1048576 bytes')
    WHEN NEW.data IS NULL OR NOT json_valid(NEW.data) THEN
        RAISE(ABORT, 'events.data must be valid JSON (json_valid failed)')
    -- A BLOB would never equal a session id a stream asks for (SPEC §3 ids are text).
    WHEN NEW.session_id IS NOT NULL AND typeof(NEW.session_id) <> 'text' THEN
        RAISE(ABORT, 'events.session_id must be text, or NULL for the global channel')
    WHEN NEW.session_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM sessions WHERE id = NEW.session_id) THEN
        RAISE(ABORT, 'events.session_id: no such session; INSERT INTO sessions(id) first')
    WHEN NEW.session_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM sessions WHERE id = NEW.session_id
                     AND closed_at IS NOT NULL) THEN
        RAISE(ABORT, 'events.session_id: session is closed; no more events may be added')
    END
    FROM (SELECT '*[' || char(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,
                              25,26,27,28,29,30,31,127) || ']*' AS control);
END;
COMMIT;

CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE is refused (DELETE to prune)');
END;

CREATE TRIGGER IF NOT EXISTS events_record_prune AFTER DELETE ON events
BEGIN
    INSERT INTO pruned(scope, through_id) VALUES (coalesce(OLD.session_id, ''), OLD.id)
        ON CONFLICT(scope) DO UPDATE SET through_id = max(through_id, excluded.through_id);
END;

-- Each stream loads every event_types name; one longer than a type can be matches nothing.
CREATE TRIGGER IF NOT EXISTS event_types_check_name BEFORE INSERT ON event_types
BEGIN
    SELECT CASE
    WHEN typeof(NEW.name) <> 'text' OR length(NEW.name) = 0 THEN
        RAISE(ABORT, 'event_types.name must be a non-empty text')
    WHEN length(CAST(NEW.name AS BLOB)) > 128 THEN
        RAISE(ABORT, 'event_types.name must be at most 128 bytes')
    END;
END;

-- ---------------------------------------------------------------------------------------
-- Policy seed: the lists of the aiohttp route sse-fcgi replaces (its seed-route):
-- DEFAULT_EVENT_TYPES -> streamed_by_default, _REPLAY_TYPES -> replayed,
-- _CRITICAL_EVENTS -> critical, _WORKER_EVENT_ALLOWLIST -> worker_fanin; plus the other
-- type names of the reference framework's EventType enum, all flags 0.
-- INSERT OR IGNORE keeps a site's own changes when schema.sql is applied again.
-- deploy/postgresql/schema.sql repeats these rows; the pg_schema suite fails when they differ.

INSERT OR IGNORE INTO event_types
    (name, streamed_by_default, replayed, critical, worker_fanin) VALUES
    ('client_output_delta',          1, 1, 0, 0),
    ('client_input_requested',       1, 1, 1, 0),
    ('client_input_received',        1, 1, 1, 0),
    ('llm_text_delta',               1, 0, 0, 0),
    ('tool_call_started',            1, 0, 0, 0),
    ('tool_call_completed',          1, 0, 0, 0),
    ('execution_started',            1, 1, 1, 0),
    ('execution_completed',          1, 0, 1, 1),
    ('execution_failed',             1, 0, 1, 1),
    ('execution_paused',             1, 0, 1, 0),
    ('node_loop_started',            1, 0, 1, 0),
    ('node_loop_iteration',          1, 0, 1, 0),
    ('node_loop_completed',          1, 0, 0, 0),
    ('llm_turn_complete',            1, 0, 0, 0),
    ('node_action_plan',             1, 0, 0, 0),
    ('goal_progress',                1, 0, 0, 0),
    ('node_internal_output',         1, 0, 0, 0),
    ('node_stalled',                 1, 0, 0, 0),
    ('node_retry',                   1, 0, 0, 0),
    ('node_tool_doom_loop',          1, 0, 0, 0),
    ('context_compacted',            1, 0, 0, 0),
    ('context_usage_updated',        1, 0, 0, 0),
    ('worker_colony_loaded',         1, 0, 0, 0),
    ('colony_created',               1, 0, 0, 0),
    ('credentials_required',         1, 0, 1, 0),
    ('subagent_report',              1, 0, 0, 1),
    ('queen_phase_changed',          1, 0, 1, 0),
    ('trigger_available',            1, 1, 0, 0),
    ('trigger_activated',            1, 1, 0, 0),
    ('trigger_deactivated',          1, 1, 0, 0),
    ('trigger_fired',                1, 0, 0, 0),
    ('trigger_removed',              1, 1, 0, 0),
    ('trigger_updated',              1, 1, 0, 0),
    ('worker_graph_loaded',          0, 0, 1, 0),
    ('execution_resumed',            0, 0, 0, 0),
    ('execution_resurrected',        0, 0, 0, 0),
    ('payment_required',             0, 0, 0, 0),
    ('state_changed',                0, 0, 0, 0),
    ('state_conflict',               0, 0, 0, 0),
    ('goal_achieved',                0, 0, 0, 0),
    ('constraint_violation',         0, 0, 0, 0),
    ('stream_started',               0, 0, 0, 0),
    ('stream_stopped',               0, 0, 0, 0),
    ('llm_reasoning_delta',          0, 0, 0, 0),
    ('client_reasoning',             0, 0, 0, 0),
    ('client_input_committed',       0, 0, 0, 0),
    ('client_credential_form_requested', 0, 0, 0, 0),
    ('colony_suggestion_requested',  0, 0, 0, 0),
    ('node_input_blocked',           0, 0, 0, 0),
    ('judge_verdict',                0, 0, 0, 0),
    ('stream_ttft_exceeded',         0, 0, 0, 0),
    ('stream_inactive',              0, 0, 0, 0),
    ('stream_nudge_sent',            0, 0, 0, 0),
    ('loop_state_changed',           0, 0, 0, 0),
    ('reminder_injected',            0, 0, 0, 0),
    ('tool_call_replay_detected',    0, 0, 0, 0),
    ('worker_completed',             0, 0, 0, 0),
    ('worker_failed',                0, 0, 0, 0),
    ('worker_loaded',                0, 0, 0, 0),
    ('worker_escalation_ticket',     0, 0, 0, 0),
    ('queen_intervention_requested', 0, 0, 0, 0),
    ('queen_persona_selected',       0, 0, 0, 0),
    ('queen_identity_selected',      0, 0, 0, 0),
    ('draft_graph_updated',          0, 0, 0, 0),
    ('flowchart_map_updated',        0, 0, 0, 0),
    ('context_compaction_started',   0, 0, 0, 0),
    ('webhook_received',             0, 0, 0, 0),
    ('custom',                       0, 0, 0, 0),
    ('escalation_requested',         0, 0, 0, 0),
    ('session_forked',               0, 0, 0, 0),
    ('missed_triggers',              0, 0, 0, 0),
    ('task_created',                 0, 0, 0, 0),
    ('task_updated',                 0, 0, 0, 0),
    ('task_deleted',                 0, 0, 0, 0),
    ('task_list_reset',              0, 0, 0, 0),
    ('task_list_reattach_mismatch',  0, 0, 0, 0),
    ('session_snapshot',             0, 0, 0, 0),
    ('credential_provider_connected',    0, 0, 0, 0),
    ('credential_provider_disconnected', 0, 0, 0, 0),
    ('tool_catalog_refreshed',       0, 0, 0, 0),
    ('tools_config_changed',         0, 0, 0, 0),
    ('crm_changed',                  0, 0, 0, 0);
