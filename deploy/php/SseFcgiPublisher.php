<?php
// SseFcgiPublisher.php - publish sse-fcgi events from PHP into the SQLite database that
// sse-fcgi streams (schema.sql; README "Publishing events", "From PHP"). One file, no
// Composer: require it. PHP 8.1 or later with PDO SQLite (Debian: php-cli php-sqlite3).
//
//   require __DIR__ . '/SseFcgiPublisher.php';
//   $sse = new SseFcgiPublisher('/var/lib/sse-fcgi/events.db');
//   $sse->createSession('s1');
//   $id = $sse->publish('s1', 'client_output_delta', ['content' => 'Hi']);  // its SSE id
//   $sse->closeSession('s1');
//
// Values are always bound to prepared statements, never formatted into SQL. `data` is
// JSON-encoded here (JSON_THROW_ON_ERROR), unless it is an SseFcgiJson, which is JSON text
// already and goes to the schema as it is. A batch is one transaction: all rows or none.
// The schema's refusals (the triggers of schema.sql) become SseFcgiRefused, whose message
// is the schema's alone; another writer holding the database past the busy timeout becomes
// SseFcgiBusy. Nothing of a call that throws is stored. It does not create the database
// or apply schema.sql (`sqlite3 events.db < schema.sql`), and it reads no events.

declare(strict_types=1);

/** A row schema.sql refused. getMessage() is the schema's message, word for word (README's
 * table), e.g. "events.session_id: no such session; INSERT INTO sessions(id) first";
 * getPrevious() is PDO's exception. Nothing of the call was stored. */
class SseFcgiRefused extends RuntimeException
{
}

/** Another writer held the database for longer than the busy timeout. Nothing of the call
 * was stored; the same call may be made again. getPrevious() is PDO's exception. */
class SseFcgiBusy extends RuntimeException
{
}

/** Event data that is JSON text already (a document from elsewhere): stored as given, and
 * the schema refuses it when it is not JSON (json_valid). */
final class SseFcgiJson
{
    public function __construct(public readonly string $text)
    {
    }
}

final class SseFcgiPublisher
{
    /** The columns of events a producer sets (the id is SQLite's). */
    private const COLUMNS = ['session_id', 'type', 'stream_id', 'node_id', 'execution_id',
                             'data', 'timestamp', 'correlation_id', 'colony_id', 'run_id'];
    private const JSON_FLAGS = JSON_THROW_ON_ERROR | JSON_UNESCAPED_SLASHES
                               | JSON_UNESCAPED_UNICODE;
    private const SQLITE_BUSY = 5;
    private const SQLITE_LOCKED = 6;
    private const SQLITE_CONSTRAINT = 19;    // what RAISE(ABORT, ...) in a trigger gives

    private PDO $db;
    /** @var array<string, PDOStatement> INSERTs by their sorted column list (at most 2^10) */
    private array $inserts = [];

    /** Opens the database at path, which must exist (a wrong path is an error, not a new
     * empty file). Every write waits up to busyTimeoutMs for another writer to finish.
     * Throws PDOException when the file cannot be opened. */
    public function __construct(string $path, private readonly int $busyTimeoutMs = 5000)
    {
        $this->db = new PDO('sqlite:' . $path, null, null, [
            PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
            PDO::SQLITE_ATTR_OPEN_FLAGS => PDO::SQLITE_OPEN_READWRITE,
        ]);
        // PDO::ATTR_TIMEOUT counts whole seconds; the pragma takes milliseconds.
        $this->db->exec('PRAGMA busy_timeout = ' . max(0, $busyTimeoutMs));
    }

    /** Creates session id unless it exists (open or closed). Returns true when it was
     * created. Throws SseFcgiRefused for an id the schema refuses, SseFcgiBusy. */
    public function createSession(string $id): bool
    {
        return $this->guard(fn () => $this->change(
            'INSERT OR IGNORE INTO sessions(id) VALUES (?)', [$id])) === 1;
    }

    /** Closes session id: its streams send what is left and end, a reconnect gets 204, and
     * later events for it are refused. Returns false when no open session had that id.
     * Throws SseFcgiBusy. */
    public function closeSession(string $id): bool
    {
        return $this->guard(fn () => $this->change(
            "UPDATE sessions SET closed_at = strftime('%Y-%m-%dT%H:%M:%fZ','now') "
            . 'WHERE id = ? AND closed_at IS NULL', [$id])) === 1;
    }

    /** Publishes one event into sessionId (null: the global channel) and returns its id,
     * the SSE id. columns sets others by name: stream_id, node_id, execution_id, timestamp,
     * correlation_id, colony_id, run_id. Throws SseFcgiRefused, SseFcgiBusy, JsonException
     * (data cannot be encoded), InvalidArgumentException (a name that is no column). */
    public function publish(?string $sessionId, string $type, mixed $data = new stdClass(),
                            array $columns = []): int
    {
        $taken = array_intersect(array_keys($columns), ['session_id', 'type', 'data']);
        if ($taken !== [])
            throw new InvalidArgumentException('publish(): ' . implode(', ', $taken)
                                               . ' is an argument of its own, not a column');
        $event = ['session_id' => $sessionId, 'type' => $type, 'data' => $data] + $columns;
        return $this->publishBatch([$event])[0];
    }

    /** Publishes events, each an array of columns by name (session_id and type required,
     * data a value to encode or an SseFcgiJson; omitted columns take the schema's defaults),
     * in one transaction, and returns their ids in order. All are stored, or none: the
     * exceptions are publish()'s, for the first event that fails. */
    public function publishBatch(array $events): array
    {
        $rows = array_map(fn (array $event) => $this->row($event), $events);  // before BEGIN
        if ($rows === [])
            return [];
        return $this->guard(function () use ($rows) {
            $this->db->exec('BEGIN IMMEDIATE');     // the write lock, or the busy wait, now
            try {
                $ids = [];
                foreach ($rows as $row) {
                    $this->insert(array_keys($row))->execute(array_values($row));
                    $ids[] = (int)$this->db->lastInsertId();
                }
                $this->db->exec('COMMIT');
                return $ids;
            } catch (Throwable $e) {
                $this->rollBack();
                throw $e;
            }
        });
    }

    /** Ends the batch's transaction. A refused row fails its own statement only: the rows
     * before it would stay in the transaction, and a COMMIT would store them. (PDO's
     * inTransaction() does not see an exec('BEGIN ...'), so a ROLLBACK that finds SQLite
     * ended the transaction already, on a full disk or an I/O error, is let pass.) */
    private function rollBack(): void
    {
        try {
            $this->db->exec('ROLLBACK');
        } catch (PDOException) {
        }
    }

    /** event checked and with data encoded, its columns sorted by name. */
    private function row(array $event): array
    {
        if (!array_key_exists('session_id', $event) || !array_key_exists('type', $event))
            throw new InvalidArgumentException('an event needs session_id (null: the global '
                                               . 'channel) and type');
        $unknown = array_diff(array_keys($event), self::COLUMNS);
        if ($unknown !== [])
            throw new InvalidArgumentException('not a column of events: '
                                               . implode(', ', $unknown));
        if (array_key_exists('data', $event))
            $event['data'] = $event['data'] instanceof SseFcgiJson
                ? $event['data']->text : json_encode($event['data'], self::JSON_FLAGS);
        ksort($event);
        return $event;
    }

    /** The INSERT of these columns (names from COLUMNS only), prepared once. */
    private function insert(array $names): PDOStatement
    {
        $key = implode(',', $names);
        return $this->inserts[$key] ??= $this->db->prepare(
            "INSERT INTO events($key) VALUES (" . implode(', ', array_fill(0, count($names), '?'))
            . ')');
    }

    /** Runs one statement in its own transaction; returns the rows it changed. */
    private function change(string $sql, array $values): int
    {
        $st = $this->db->prepare($sql);
        $st->execute($values);
        return $st->rowCount();
    }

    /** Runs work, turning SQLite's refusal and busy errors into this file's exceptions. */
    private function guard(callable $work): mixed
    {
        try {
            return $work();
        } catch (PDOException $e) {
            // errorInfo is [SQLSTATE, SQLite's code, SQLite's message]; getMessage() adds
            // "SQLSTATE[23000]: Integrity constraint violation: 19 " before the message.
            throw match ($e->errorInfo[1] ?? null) {
                self::SQLITE_CONSTRAINT => new SseFcgiRefused($e->errorInfo[2], 0, $e),
                self::SQLITE_BUSY, self::SQLITE_LOCKED => new SseFcgiBusy(
                    'database is locked: another writer held the database for more than '
                    . "{$this->busyTimeoutMs} ms; nothing was stored, the call may be made "
                    . 'again', 0, $e),
                default => $e,
            };
        }
    }
}
