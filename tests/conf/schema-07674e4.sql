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
-- hex SHA-256 of salt || token, never the token itself. scope is what the token opens: a
-- session id, 'worker:<id>', or '' for the global channel. A scope may have several tokens
-- (rotation: add the new one, delete the old one later).
CREATE TABLE IF NOT EXISTS read_tokens (
    scope      TEXT NOT NULL,
    salt       TEXT NOT NULL CHECK (length(salt) BETWEEN 16 AND 128),
    hash       TEXT NOT NULL CHECK (length(hash) = 64 AND hash NOT GLOB '*[^0-9a-f]*'),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
CREATE INDEX IF NOT EXISTS read_tokens_scope ON read_tokens(scope);

-- ---------------------------------------------------------------------------------------
-- INSERT-time refusal of bad rows, each with a message that names the column and the rule.
-- char(1,...,31,127) is the set of ASCII control characters.

CREATE TRIGGER IF NOT EXISTS sessions_check_id BEFORE INSERT ON sessions
WHEN typeof(NEW.id) <> 'text' OR length(CAST(NEW.id AS BLOB)) NOT BETWEEN 1 AND 128
     OR NEW.id GLOB '*[^A-Za-z0-9._:-]*'
BEGIN
    SELECT RAISE(ABORT, 'sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -');
END;

CREATE TRIGGER IF NOT EXISTS events_check_insert BEFORE INSERT ON events
BEGIN
    SELECT CASE
    WHEN NEW.type IS NULL OR typeof(NEW.type) <> 'text' OR length(NEW.type) = 0 THEN
        RAISE(ABORT, 'events.type must be a non-empty text')
    WHEN length(CAST(NEW.type AS BLOB)) > 128 THEN
        RAISE(ABORT, 'events.type must be at most 128 bytes')
    WHEN NEW.type GLOB ('*[' || char(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,
                                     22,23,24,25,26,27,28,29,30,31,127) || ']*')
         OR instr(CAST(NEW.type AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.type must not contain control characters')
    WHEN NEW.stream_id IS NOT NULL AND length(CAST(NEW.stream_id AS BLOB)) > 128 THEN
        RAISE(ABORT, 'events.stream_id must be at most 128 bytes')
    WHEN NEW.stream_id GLOB ('*[' || char(1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,
                                          21,22,23,24,25,26,27,28,29,30,31,127) || ']*')
         OR instr(CAST(NEW.stream_id AS BLOB), x'00') > 0 THEN
        RAISE(ABORT, 'events.stream_id must not contain control characters')
    WHEN NEW.data IS NULL OR NOT json_valid(NEW.data) THEN
        RAISE(ABORT, 'events.data must be valid JSON (json_valid failed)')
    WHEN NEW.session_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM sessions WHERE id = NEW.session_id) THEN
        RAISE(ABORT, 'events.session_id: no such session; INSERT INTO sessions(id) first')
    WHEN NEW.session_id IS NOT NULL
         AND EXISTS (SELECT 1 FROM sessions WHERE id = NEW.session_id
                     AND closed_at IS NOT NULL) THEN
        RAISE(ABORT, 'events.session_id: session is closed; no more events may be added')
    END;
END;

CREATE TRIGGER IF NOT EXISTS events_refuse_update BEFORE UPDATE ON events
BEGIN
    SELECT RAISE(ABORT, 'events are append-only: UPDATE is refused (DELETE to prune)');
END;

CREATE TRIGGER IF NOT EXISTS events_record_prune AFTER DELETE ON events
BEGIN
    INSERT INTO pruned(scope, through_id) VALUES (coalesce(OLD.session_id, ''), OLD.id)
        ON CONFLICT(scope) DO UPDATE SET through_id = max(through_id, excluded.through_id);
END;

-- ---------------------------------------------------------------------------------------
-- Policy seed: the lists of the aiohttp route sse-fcgi replaces (its seed-route):
-- DEFAULT_EVENT_TYPES -> streamed_by_default, _REPLAY_TYPES -> replayed,
-- _CRITICAL_EVENTS -> critical, _WORKER_EVENT_ALLOWLIST -> worker_fanin; plus the other
-- type names of the reference framework's EventType enum, all flags 0.
-- INSERT OR IGNORE keeps a site's own changes when schema.sql is applied again.

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
