-- sse-fcgi schema for PostgreSQL 15: the shared event log of several web nodes. Apply with:
--     psql -X -v ON_ERROR_STOP=1 -d <db> -f deploy/postgresql/schema.sql
--
-- The same tables, columns, policy seed and INSERT-time refusals as ../../schema.sql, with the
-- same messages byte for byte, so a producer reads the same words from either database. On
-- each node a relay (sse-fcgi-relay) copies the rows into the node's own SQLite file made from
-- schema.sql, which the responder streams. Every statement is idempotent and the whole file
-- is one transaction: applying it again keeps the rows and a site's own event_types changes.
-- sse_schema_version() is the schema version (SQLite's PRAGMA user_version).
-- The refusals raise SQLSTATE 23514 (check_violation), as SQLite's RAISE(ABORT) is
-- SQLITE_CONSTRAINT (19); psql prints them as "ERROR:  <message>".
--
-- Ordering (what the relay relies on): ids become visible in id order.
-- * One sequence, sse_log (CACHE 1: a per-session cache would hand out ids out of order).
--   Every writer takes its number through sse_log_take(), which first takes the
--   transaction-scoped advisory lock SSE_LOG_LOCK = 8319104397097527145 (0x7373655f66636769,
--   the bytes of "sse_fcgi"; no other application may use that key in this database). The
--   lock is held until the transaction ends, so the writer that took id 5 commits (or rolls
--   back) before any other can take 6: a reader of `id > 5` can never miss a 5 that commits
--   later, which a plain sequence allows.
-- * events.id has no default: the BEFORE INSERT trigger sets it FIRST, then checks the row,
--   so the "session is closed" check runs under the lock, and an event never gets an id after
--   its session's close. An id the producer gives is overwritten. Ids have gaps: session
--   changes and refused rows take numbers too.
-- * sessions.log_id (PostgreSQL only) takes a number from the same sequence at each INSERT
--   (after the id check) and each UPDATE, so the relay reads session changes
--   (log_id > cursor) in the same order as events. DELETE of a session is not logged.
-- * After each statement that inserts or deletes events, or inserts or updates sessions,
--   pg_notify('sse_fcgi', '') wakes a LISTENing relay; the payload is empty, the rows are the
--   news. Notifications go out at commit.
-- * The cost: writers are serialised from their first event or session write to their
--   commit. Keep producer transactions short.
-- * The close check needs READ COMMITTED (the default): each statement of a trigger then
--   reads what committed before it took the lock. A REPEATABLE READ or SERIALIZABLE
--   producer's snapshot is older, and could miss a close that committed just before.
--
-- Where SQLite and PostgreSQL cannot behave alike (the pg_schema suite checks each):
-- * NUL: PostgreSQL text cannot hold one. It refuses chr(0) ("null character not permitted")
--   and E'\x00' ('invalid byte sequence for encoding "UTF8": 0x00') itself, before any
--   trigger; schema.sql refuses a NUL with its "must not contain control characters".
-- * Invalid UTF-8: a UTF8 database refuses it ('invalid byte sequence ...'); SQLite stores
--   it. This file is written for a UTF8 database (SQL_ASCII would store such bytes too).
-- * Typed values: both store a number given for a text column as its text (SQLite's TEXT
--   affinity acts before its triggers too: type 5 is '5' in both), but a non-integer's text
--   differs: SQLite writes a REAL (0.10 -> '0.1', 1.5e300 -> '1.5e+300'), PostgreSQL the
--   numeric literal with all its digits (0.10 -> '0.10'; 1.5e300 -> 301 digits, refused as a
--   timestamp over 64 bytes). Give timestamps as text.
-- * A bytea is cast to its text ('\x41') before any trigger sees it, where SQLite refuses a
--   BLOB: so "events.type must be a non-empty text", "events.timestamp must be text or a
--   number" and "events.session_id must be text, or NULL for the global channel" are never
--   said for a bytea here. As type or timestamp it is taken as that text; as session_id it
--   names no session; as sessions.id its backslash is refused.
-- * events.data is text checked by PostgreSQL's json input plus json_valid()'s nesting limit
--   (2000), so the same documents pass and fail; not a json column, whose input would refuse
--   in its own words before the trigger.
-- * An id the producer gives for events is overwritten (above); SQLite keeps it.
-- * event_types flags and read_tokens checks are CHECK constraints in both; their refusals
--   are each database's own words (SQLite "CHECK constraint failed: replayed IN (0, 1)",
--   PostgreSQL 'new row for relation "event_types" violates check constraint ...'), and so
--   are NOT NULL and PRIMARY KEY refusals.
-- * created_at and timestamp defaults are statement_timestamp() in UTC, written as SQLite's
--   strftime('%Y-%m-%dT%H:%M:%fZ', 'now') writes it (2024-01-02T03:04:05.678Z); both take
--   one time per statement.
-- * TRUNCATE of events is refused (PostgreSQL only): it runs no DELETE trigger, so `pruned`
--   would never learn of the rows. DELETE to prune.
-- * No journal_mode: PostgreSQL always writes ahead.
-- So every row this file takes, schema.sql takes too (as far as the suite tries), and the
-- relay can copy it.

BEGIN;
SET LOCAL client_min_messages = warning;  -- no "already exists, skipping" when applied again

CREATE SEQUENCE IF NOT EXISTS sse_log AS bigint CACHE 1;
ALTER SEQUENCE sse_log CACHE 1;

-- The next id of the log, under SSE_LOG_LOCK (above): call it from triggers only.
CREATE OR REPLACE FUNCTION sse_log_take() RETURNS bigint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(8319104397097527145);  -- SSE_LOG_LOCK
    RETURN nextval('sse_log');
END;
$$;

CREATE OR REPLACE FUNCTION sse_schema_version() RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT 1 $$;

-- Now as SQLite's strftime('%Y-%m-%dT%H:%M:%fZ', 'now') writes it.
CREATE OR REPLACE FUNCTION sse_now_text() RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT to_char(statement_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

CREATE TABLE IF NOT EXISTS sessions (
    id         text PRIMARY KEY NOT NULL,
    created_at text NOT NULL DEFAULT sse_now_text(),
    closed_at  text,
    log_id     bigint NOT NULL               -- sse_log position of the last change (above)
);
CREATE INDEX IF NOT EXISTS sessions_log_id ON sessions(log_id);

CREATE TABLE IF NOT EXISTS events (
    id             bigint PRIMARY KEY,            -- sse_log_take() in the trigger; no default
    session_id     text,                          -- NULL: global channel
    type           text NOT NULL,
    stream_id      text,
    node_id        text,
    execution_id   text,
    data           text NOT NULL DEFAULT '{}',    -- JSON, checked by the trigger (not json:
                                                  -- its cast would refuse in its own words)
    timestamp      text NOT NULL DEFAULT sse_now_text(),
    correlation_id text,
    colony_id      text,
    run_id         text
);
CREATE INDEX IF NOT EXISTS events_session_id ON events(session_id, id);
CREATE INDEX IF NOT EXISTS events_stream_id ON events(stream_id, id);

CREATE TABLE IF NOT EXISTS event_types (
    name                text PRIMARY KEY NOT NULL,
    streamed_by_default integer NOT NULL DEFAULT 0 CHECK (streamed_by_default IN (0, 1)),
    replayed            integer NOT NULL DEFAULT 0 CHECK (replayed IN (0, 1)),
    critical            integer NOT NULL DEFAULT 0 CHECK (critical IN (0, 1)),
    worker_fanin        integer NOT NULL DEFAULT 0 CHECK (worker_fanin IN (0, 1))
);

-- Highest pruned event id per scope ('' = global channel), kept by events_record_prune.
CREATE TABLE IF NOT EXISTS pruned (
    scope      text PRIMARY KEY NOT NULL,
    through_id bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS pruned_through_id ON pruned(through_id);

-- Read tokens for SSE_AUTH=token, as in schema.sql (salt and SHA-256 hex, never the token).
CREATE TABLE IF NOT EXISTS read_tokens (
    scope      text NOT NULL,
    salt       text NOT NULL CHECK (length(salt) BETWEEN 16 AND 128),
    hash       text NOT NULL CHECK (length(hash) = 64 AND hash !~ '[^0-9a-f]'),
    created_at text NOT NULL DEFAULT sse_now_text()
);
CREATE INDEX IF NOT EXISTS read_tokens_scope ON read_tokens(scope);

-- ---------------------------------------------------------------------------------------
-- INSERT-time refusals, in schema.sql's order and words (its limits are store/event.h's).

-- Refuses value (NULL passes) over max_bytes, or holding one of char(1..31, 127).
CREATE OR REPLACE FUNCTION sse_refuse_field(value text, field text, max_bytes integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF octet_length(value) > max_bytes THEN
        RAISE EXCEPTION '% must be at most % bytes', field, max_bytes
            USING ERRCODE = 'check_violation';
    ELSIF value ~ '[\x01-\x1f\x7f]' THEN
        RAISE EXCEPTION '% must not contain control characters', field
            USING ERRCODE = 'check_violation';
    END IF;
END;
$$;

-- True when doc is JSON that SQLite's json_valid() also takes: PostgreSQL 15 has no
-- pg_input_is_valid(), so the cast is tried in its own block; json_valid() refuses nesting
-- deeper than 2000 (JSON_MAX_DEPTH), which only a doc with more than 2000 brackets can have.
-- The doc is valid JSON by then, so the regexp that drops its strings cannot be misled.
CREATE OR REPLACE FUNCTION sse_is_json(doc text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    brackets text;
    deepest integer := 0;
BEGIN
    IF doc IS NULL THEN
        RETURN false;
    END IF;
    BEGIN
        PERFORM doc::json;
    EXCEPTION
        WHEN data_exception THEN        -- 22P02 the syntax, 22P05 some \u escapes
            RETURN false;
        WHEN statement_too_complex THEN -- 54001 "stack depth limit exceeded": deep nesting
            RETURN false;
    END;
    IF octet_length(doc) - octet_length(translate(doc, '[{', '')) <= 2000 THEN
        RETURN true;
    END IF;
    brackets := regexp_replace(regexp_replace(doc, '"([^"\\]|\\.)*"', '', 'g'),
                               '[^][{}]', '', 'g');
    SELECT max(d) INTO deepest FROM (
        SELECT sum(CASE WHEN c IN ('[', '{') THEN 1 ELSE -1 END) OVER (ORDER BY n) AS d
        FROM string_to_table(brackets, NULL) WITH ORDINALITY AS t(c, n)) AS running;
    RETURN coalesce(deepest, 0) <= 2000;
END;
$$;

CREATE OR REPLACE FUNCTION sse_sessions_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.id IS NULL OR octet_length(NEW.id) NOT BETWEEN 1 AND 128
       OR NEW.id ~ '[^A-Za-z0-9._:-]' THEN
        RAISE EXCEPTION 'sessions.id must be 1-128 bytes of A-Z a-z 0-9 . _ : -'
            USING ERRCODE = 'check_violation';
    END IF;
    NEW.log_id := sse_log_take();
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION sse_sessions_before_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.log_id := sse_log_take();
    RETURN NEW;
END;
$$;

-- The id first (under the lock, see the top), then schema.sql's checks in its order; the
-- cheap length checks come before the JSON cast, which reads all of data.
CREATE OR REPLACE FUNCTION sse_events_before_insert() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    is_closed boolean;
BEGIN
    NEW.id := sse_log_take();
    IF NEW.type IS NULL OR NEW.type = '' THEN
        RAISE EXCEPTION 'events.type must be a non-empty text'
            USING ERRCODE = 'check_violation';
    END IF;
    PERFORM sse_refuse_field(NEW.type, 'events.type', 128);
    PERFORM sse_refuse_field(NEW.stream_id, 'events.stream_id', 128);
    PERFORM sse_refuse_field(NEW.node_id, 'events.node_id', 256);
    PERFORM sse_refuse_field(NEW.execution_id, 'events.execution_id', 256);
    PERFORM sse_refuse_field(NEW.correlation_id, 'events.correlation_id', 256);
    PERFORM sse_refuse_field(NEW.colony_id, 'events.colony_id', 256);
    PERFORM sse_refuse_field(NEW.run_id, 'events.run_id', 256);
    IF NEW.timestamp IS NULL THEN
        RAISE EXCEPTION 'events.timestamp must be text or a number'
            USING ERRCODE = 'check_violation';
    ELSIF octet_length(NEW.timestamp) > 64 THEN
        RAISE EXCEPTION 'events.timestamp must be at most 64 bytes'
            USING ERRCODE = 'check_violation';
    ELSIF octet_length(NEW.data) > 1048576 THEN
        RAISE EXCEPTION 'events.data must be at most 1048576 bytes'
            USING ERRCODE = 'check_violation';
    ELSIF NOT sse_is_json(NEW.data) THEN
        RAISE EXCEPTION 'events.data must be valid JSON (json_valid failed)'
            USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.session_id IS NOT NULL THEN
        SELECT closed_at IS NOT NULL INTO is_closed FROM sessions WHERE id = NEW.session_id;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'events.session_id: no such session; INSERT INTO sessions(id) first'
                USING ERRCODE = 'check_violation';
        ELSIF is_closed THEN
            RAISE EXCEPTION 'events.session_id: session is closed; no more events may be added'
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    RETURN NEW;
END;
$$;

CREATE OR REPLACE FUNCTION sse_events_refuse_update() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: UPDATE is refused (DELETE to prune)'
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE OR REPLACE FUNCTION sse_events_refuse_truncate() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events: TRUNCATE is refused (DELETE to prune)'
        USING ERRCODE = 'check_violation';
END;
$$;

CREATE OR REPLACE FUNCTION sse_events_record_prune() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO pruned(scope, through_id)
        SELECT coalesce(session_id, ''), max(id) FROM deleted_rows GROUP BY 1
        ON CONFLICT (scope) DO UPDATE
            SET through_id = greatest(pruned.through_id, excluded.through_id);
    RETURN NULL;
END;
$$;

CREATE OR REPLACE FUNCTION sse_event_types_check_name() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.name IS NULL OR NEW.name = '' THEN
        RAISE EXCEPTION 'event_types.name must be a non-empty text'
            USING ERRCODE = 'check_violation';
    ELSIF octet_length(NEW.name) > 128 THEN
        RAISE EXCEPTION 'event_types.name must be at most 128 bytes'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- The wakeup only (see the top).
CREATE OR REPLACE FUNCTION sse_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sse_fcgi', '');
    RETURN NULL;
END;
$$;

CREATE OR REPLACE TRIGGER sessions_before_insert BEFORE INSERT ON sessions
    FOR EACH ROW EXECUTE FUNCTION sse_sessions_before_insert();
CREATE OR REPLACE TRIGGER sessions_before_update BEFORE UPDATE ON sessions
    FOR EACH ROW EXECUTE FUNCTION sse_sessions_before_update();
CREATE OR REPLACE TRIGGER sessions_notify AFTER INSERT OR UPDATE ON sessions
    FOR EACH STATEMENT EXECUTE FUNCTION sse_notify();
CREATE OR REPLACE TRIGGER events_before_insert BEFORE INSERT ON events
    FOR EACH ROW EXECUTE FUNCTION sse_events_before_insert();
CREATE OR REPLACE TRIGGER events_refuse_update BEFORE UPDATE ON events
    FOR EACH ROW EXECUTE FUNCTION sse_events_refuse_update();
CREATE OR REPLACE TRIGGER events_refuse_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION sse_events_refuse_truncate();
CREATE OR REPLACE TRIGGER events_record_prune AFTER DELETE ON events
    REFERENCING OLD TABLE AS deleted_rows
    FOR EACH STATEMENT EXECUTE FUNCTION sse_events_record_prune();
CREATE OR REPLACE TRIGGER events_notify AFTER INSERT OR DELETE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION sse_notify();
CREATE OR REPLACE TRIGGER event_types_check_name BEFORE INSERT ON event_types
    FOR EACH ROW EXECUTE FUNCTION sse_event_types_check_name();

-- ---------------------------------------------------------------------------------------
-- Policy seed: schema.sql's rows, the same names and flags (the pg_schema suite compares
-- them). ON CONFLICT DO NOTHING keeps a site's own changes when this file is applied again.

INSERT INTO event_types
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
    ('crm_changed',                  0, 0, 0, 0)
ON CONFLICT (name) DO NOTHING;

COMMIT;
