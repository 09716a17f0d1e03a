// clients.mjs - standard EventSource clients (npm `eventsource`, the WHATWG EventSource for
// Node) for the test suite, so that it does not judge the server only with a client of its
// own (issue 11).
//
//   node clients.mjs --deadline-ms=MS [--count=N] [--header='Name: value']...
//                    [--progress=FILE] URL...
//
// Opens N clients (default 1) on each URL and records, per client, every event id received
// (onmessage), every open, every error with its status code and the readyState after it.
// It does nothing a page using EventSource would not: no retry or reconnect of its own, only
// the library's (retry:, Last-Event-ID, 204 ends, any other status fails for good). Headers
// given with --header are added through the library's documented `fetch` option, below the
// library's own (Accept, Last-Event-ID).
//
// It exits once every client is CLOSED (ended for good), or at the deadline, and then prints
// one JSON line per client on stdout:
//   {"client":0,"url":"...","ids":["1","2"],"opens":2,"errors":[{"t_ms":812,"code":204,
//    "message":"...","ready_state":2}],"ready_state":2,"is_deadline":false}
// With --progress, each open, message and error is also appended to FILE as it happens, one
// JSON line each ({"client":0,"t_ms":5,"what":"open","ready_state":1}), for a test that
// waits for a step. Exit status: 0 all closed, 3 deadline, 2 usage.
import {appendFileSync} from "node:fs";
import {EventSource} from "eventsource";

const started = Date.now();
const elapsed = () => Date.now() - started;

function usage(why) {
  process.stderr.write(`clients.mjs: ${why}\nusage: node clients.mjs --deadline-ms=MS ` +
                       "[--count=N] [--header='Name: value']... [--progress=FILE] URL...\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opt = {deadlineMs: 0, count: 1, headers: {}, progress: null, urls: []};
  for (const arg of argv) {
    const [key, ...rest] = arg.split("=");
    const value = rest.join("=");
    if (key === "--deadline-ms")
      opt.deadlineMs = Number(value);
    else if (key === "--count")
      opt.count = Number(value);
    else if (key === "--progress")
      opt.progress = value;
    else if (key === "--header") {
      const colon = value.indexOf(":");
      if (colon <= 0)
        usage(`bad header '${value}'`);
      opt.headers[value.slice(0, colon).trim()] = value.slice(colon + 1).trim();
    } else if (arg.startsWith("--"))
      usage(`unknown option ${arg}`);
    else
      opt.urls.push(arg);
  }
  if (!(opt.deadlineMs > 0) || !(Number.isInteger(opt.count) && opt.count > 0))
    usage("--deadline-ms and --count must be positive");
  if (opt.urls.length === 0)
    usage("no URL");
  return opt;
}

const opt = parseArgs(process.argv.slice(2));

function progress(record) {
  if (opt.progress)
    appendFileSync(opt.progress, JSON.stringify({t_ms: elapsed(), ...record}) + "\n");
}

// The library's documented way to add request headers; its own headers win.
const extraHeaders = Object.keys(opt.headers).length > 0
  ? {fetch: (input, init) => fetch(input, {...init, headers: {...opt.headers, ...init.headers}})}
  : undefined;

const clients = [];

function report(isDeadline) {
  for (const c of clients) {
    process.stdout.write(JSON.stringify({
      client: c.index, url: c.url, ids: c.ids, opens: c.opens, errors: c.errors,
      ready_state: c.source.readyState, is_deadline: isDeadline,
    }) + "\n");
  }
}

function finish(isDeadline) {
  report(isDeadline);
  for (const c of clients)
    c.source.close();
  process.exit(isDeadline ? 3 : 0);
}

function open(index, url) {
  const c = {index, url, ids: [], opens: 0, errors: [], source: null};
  c.source = new EventSource(url, extraHeaders);
  c.source.onopen = () => {
    c.opens += 1;
    progress({client: index, what: "open", ready_state: c.source.readyState});
  };
  c.source.onmessage = (event) => {
    c.ids.push(event.lastEventId);
    progress({client: index, what: "message", id: event.lastEventId});
  };
  c.source.onerror = (event) => {
    const error = {t_ms: elapsed(), code: event.code ?? null, message: event.message ?? null,
                   ready_state: c.source.readyState};
    c.errors.push(error);
    progress({client: index, what: "error", code: error.code, ready_state: error.ready_state});
    if (clients.every((other) => other.source.readyState === EventSource.CLOSED))
      finish(false);
  };
  clients.push(c);
}

for (const url of opt.urls) {
  for (let i = 0; i < opt.count; i++)
    open(clients.length, url);
}
setTimeout(() => finish(true), opt.deadlineMs);
