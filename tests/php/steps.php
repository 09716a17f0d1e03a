<?php
// steps.php - the php suite's producer (tests/integration/test_php.c): deploy/php/
// SseFcgiPublisher.php called as an app calls it, one step per run, so that the suite can
// count the rows and read the stream between steps.
//
//   steps.php DB open SESSION      createSession: prints "created" or "exists"
//   steps.php DB close SESSION     closeSession: prints "closed" or "not open"
//   steps.php DB publish SESSION   publish() one event, then publishBatch() three; prints
//                                  the four ids on one line
//   steps.php DB batch KIND        a batch of three into s1 whose middle row is KIND: good,
//                                  json, stream_id, data, typo, closed (session s2), utf8;
//                                  prints the ids
//   steps.php DB busy TIMEOUT_MS   prints "waiting", publishes a batch of two into s1 with
//                                  that busy timeout and prints the ids, then "waited N ms"
//
// A step that throws prints "<class>: <message>" instead of the ids and exits 1 (busy still
// prints its "waited" line).

declare(strict_types=1);

require __DIR__ . '/../../deploy/php/SseFcgiPublisher.php';

// Every quote SQL, a shell or JSON knows, a slash, non-ASCII text and a line break.
const HOSTILE = "it's \"quoted\" \\ back'); DELETE FROM events; -- /é\u{1F600}\nline two";

function text_row(?string $session, string $content): array
{
    return ['session_id' => $session, 'type' => 'llm_text_delta',
            'data' => ['content' => $content]];
}

// The middle row of `batch KIND`.
function bad_row(string $kind): array
{
    return match ($kind) {
        'good' => text_row('s1', 'middle'),
        'json' => ['data' => new SseFcgiJson('{"content":')] + text_row('s1', ''),
        'stream_id' => text_row('s1', 'long stream id') + ['stream_id' => str_repeat('w', 129)],
        'data' => text_row('s1', str_repeat('x', 1048576)),
        'typo' => text_row('typo', 'no such session'),
        'closed' => text_row('s2', 'closed session'),
        'utf8' => text_row('s1', "\xff not UTF-8"),
    };
}

function run_step(SseFcgiPublisher $sse, string $step, string $arg): string
{
    return match ($step) {
        'open' => $sse->createSession($arg) ? 'created' : 'exists',
        'close' => $sse->closeSession($arg) ? 'closed' : 'not open',
        'publish' => implode(' ', [
            $sse->publish($arg, 'client_output_delta', ['content' => HOSTILE],
                          ['stream_id' => 'queen']),
            ...$sse->publishBatch([text_row($arg, 'one'), text_row($arg, 'two'),
                                   text_row($arg, 'three')])]),
        'batch' => implode(' ', $sse->publishBatch([text_row('s1', 'first'), bad_row($arg),
                                                    text_row('s1', 'last')])),
        'busy' => implode(' ', $sse->publishBatch([text_row('s1', 'waited'),
                                                   text_row('s1', 'for the lock')])),
    };
}

if ($argc !== 4) {
    fwrite(STDERR, "usage: steps.php DB open|close|publish|batch|busy ARG\n");
    exit(2);
}
[, $db, $step, $arg] = $argv;
$status = 0;
$start = hrtime(true);
try {
    $sse = new SseFcgiPublisher($db, $step === 'busy' ? (int)$arg : 5000);
    if ($step === 'busy')
        echo "waiting\n";
    echo run_step($sse, $step, $arg), "\n";
} catch (Throwable $e) {
    echo get_class($e), ': ', $e->getMessage(), "\n";
    $status = 1;
}
if ($step === 'busy')
    printf("waited %d ms\n", intdiv(hrtime(true) - $start, 1000000));
exit($status);
