#!/usr/bin/php
<?php
// A producer for the shared PostgreSQL log (deploy/postgresql/schema.sql) with PHP's PDO
// (Debian: php-cli php-pgsql).
//
//   publish.php [-d DSN] open SESSION      create the session (again: no-op)
//   publish.php [-d DSN] publish SESSION   one event, then a batch in one transaction
//   publish.php [-d DSN] refused SESSION   a batch with a bad row: refused, rolled back
//   publish.php [-d DSN] close SESSION     close: streams end, reconnects get 204
//
// DSN is PDO's "pgsql:host=db1;dbname=sse;user=producer"; the default "pgsql:" leaves
// every setting to libpq's environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD).
// Values are always bound to prepared statements, never formatted into the SQL. Keep
// transactions short: the schema serialises writers from their first row to their commit.

const USAGE = "usage: publish.php [-d DSN] open|publish|refused|close SESSION\n";

function open_session(PDO $db, string $session): void
{
    $db->prepare('INSERT INTO sessions(id) VALUES (?) ON CONFLICT DO NOTHING')
       ->execute([$session]);
}

// One event, its own transaction; returns the id PostgreSQL gave it (the SSE id).
function publish(PDO $db, string $session, string $type, array $data): int
{
    $st = $db->prepare('INSERT INTO events(session_id, type, data) VALUES (?, ?, ?) '
                       . 'RETURNING id');
    $st->execute([$session, $type, json_encode($data, JSON_THROW_ON_ERROR)]);
    return (int)$st->fetchColumn();
}

// [session, type, data] rows in one transaction: all are stored, or none.
function publish_batch(PDO $db, array $rows): void
{
    $db->beginTransaction();
    try {
        $st = $db->prepare('INSERT INTO events(session_id, type, data) VALUES (?, ?, ?)');
        foreach ($rows as [$session, $type, $data])
            $st->execute([$session, $type, json_encode($data, JSON_THROW_ON_ERROR)]);
        $db->commit();
    } catch (Throwable $e) {
        $db->rollBack();            // a refused row has aborted the transaction already
        throw $e;
    }
}

// Returns false when there was no open session of that id.
function close_session(PDO $db, string $session): bool
{
    $st = $db->prepare('UPDATE sessions SET closed_at = sse_now_text() '  // the schema's now
                       . 'WHERE id = ? AND closed_at IS NULL');
    $st->execute([$session]);
    return $st->rowCount() === 1;
}

// The schema's message out of a PDOException: getMessage() is "SQLSTATE[23514]: Check
// violation: 7 ERROR:  <message>\nCONTEXT:  ...", errorInfo[2] libpq's "ERROR:  <message>
// \nCONTEXT:  ..."; PDO has no field with the message alone.
function refusal_message(PDOException $e): string
{
    return preg_match('/^ERROR:  (.*)$/m', $e->errorInfo[2] ?? '', $m) ? $m[1]
                                                                        : $e->getMessage();
}

$args = array_slice($argv, 1);
$dsn = 'pgsql:';
if (($args[0] ?? '') === '-d' && count($args) >= 2)
    $dsn = array_splice($args, 0, 2)[1];
if (count($args) !== 2 || !in_array($args[0], ['open', 'publish', 'refused', 'close'], true)) {
    fwrite(STDERR, USAGE);
    exit(2);
}
[$step, $session] = $args;
// ERRMODE_EXCEPTION: every failed statement throws, none returns false unnoticed. PDO
// autocommits outside beginTransaction(); the default READ COMMITTED is what the schema's
// close check needs.
$db = new PDO($dsn, null, null, [PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION]);
switch ($step) {
case 'open':
    open_session($db, $session);
    break;
case 'publish':
    echo publish($db, $session, 'client_output_delta', ['content' => "it's \"Hi\""]), "\n";
    publish_batch($db, [[$session, 'llm_text_delta', ['content' => 'one']],
                        [$session, 'llm_text_delta', ['content' => 'two']],
                        [$session, 'llm_text_delta', ['content' => 'three']]]);
    break;
case 'refused':
    try {
        publish_batch($db, [[$session, 'llm_text_delta', ['content' => 'rolled back']],
                            ['typo', 'llm_text_delta', ['content' => 'refused']]]);
    } catch (PDOException $e) {     // getCode() is the SQLSTATE: 23514 for every refusal
        echo 'refused: PDOException (SQLSTATE ', $e->getCode(), '): ', refusal_message($e),
             "\n", "the whole batch was rolled back: none of its rows is in the log\n";
    }
    break;
case 'close':
    if (!close_session($db, $session)) {
        fwrite(STDERR, "publish.php: no open session $session\n");
        exit(1);
    }
}
