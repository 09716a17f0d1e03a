<?php
// publish-demo.php - a short scripted agent run, published with SseFcgiPublisher.php one
// event at a time, to watch arrive in the viewer (deploy/viewer/). The PHP twin of
// deploy/demo/publish.sh.
//
// On a web server: copy this file and SseFcgiPublisher.php next to the viewer's index.html
// and load publish-demo.php once, which creates session "demo"; then open the viewer on
// session demo in one tab and load publish-demo.php again in another (?session=demo2 for
// another session; only ids that start with "demo" are accepted, so the page cannot write
// into a real session; delete it when done all the same). The database
// is SSE_DB (a `SetEnv SSE_DB` in .htaccess reaches PHP too) or DEMO_DB below, and the web
// server's user must be able to write it (README "From PHP").
//
// From a shell:  php publish-demo.php DB [SESSION]   (SSE_DEMO_PAUSE_MS: the pause, 400)
// It prints one line per event, "<id> <type>", then a summary; a refusal or a busy
// database prints its message and exits 1 (HTTP 409 or 503 on a web server).

declare(strict_types=1);

require __DIR__ . '/SseFcgiPublisher.php';

const DEMO_DB = '/home/USER/data/events.db';    // edit, or set SSE_DB

const DEMO_RUN = [
    ['execution_started',   'queen',             ['goal' => 'summarise the inbox']],
    ['llm_text_delta',      'queen',             ['content' => 'Reading the inbox']],
    ['tool_call_started',   'queen',             ['tool' => 'mail.search',
                                                  'args' => ['folder' => 'inbox',
                                                             'unread' => true]]],
    ['tool_call_completed', 'queen',             ['tool' => 'mail.search',
                                                  'result' => ['count' => 3]]],
    ['subagent_report',     'worker:summariser', ['summary' => '2 invoices, 1 meeting request']],
    ['client_output_delta', 'queen',             ['content' => 'You have 3 unread mails: ']],
    ['client_output_delta', 'queen',             ['content' => "2 invoices and a meeting "
                                                               . "request. That's all."]],
    ['execution_completed', 'queen',             ['tokens' => 412]],
];

function say(string $line): void
{
    echo $line, "\n";
    flush();                                    // a browser shows each line as it comes
}

function fail(int $http_status, string $line): never
{
    if (PHP_SAPI === 'cli') {
        fwrite(STDERR, "publish-demo.php: $line\n");
        exit(1);
    }
    http_response_code($http_status);
    say($line);
    exit;
}

if (PHP_SAPI === 'cli') {
    if ($argc < 2 || $argc > 3)
        fail(2, 'usage: php publish-demo.php DB [SESSION]');
    [$db, $session] = [$argv[1], $argv[2] ?? 'demo'];
} else {
    header('Content-Type: text/plain; charset=utf-8');
    header('X-Content-Type-Options: nosniff');
    $db = $_SERVER['SSE_DB'] ?? (getenv('SSE_DB') ?: DEMO_DB);
    $session = (string)($_GET['session'] ?? 'demo');
    if (!str_starts_with($session, 'demo'))
        fail(400, 'this demo publishes only into sessions whose id starts with "demo"');
}
$pause_ms = getenv('SSE_DEMO_PAUSE_MS') === false ? 400 : (int)getenv('SSE_DEMO_PAUSE_MS');

try {
    $sse = new SseFcgiPublisher($db);
    $sse->createSession($session);
    $run = bin2hex(random_bytes(4));            // tells one run of the demo from the next
    foreach (DEMO_RUN as [$type, $stream_id, $data]) {
        $id = $sse->publish($session, $type, ['run' => $run] + $data,
                            ['stream_id' => $stream_id]);
        say("$id $type");
        usleep($pause_ms * 1000);
    }
} catch (SseFcgiRefused $e) {                   // e.g. the session was closed
    fail(409, 'refused: ' . $e->getMessage());
} catch (SseFcgiBusy $e) {
    fail(503, 'busy: ' . $e->getMessage());
} catch (PDOException $e) {                     // no such file, or not writable by this user
    fail(500, "cannot publish into $db: " . $e->getMessage());
}
say(count(DEMO_RUN) . " events published into session $session");
