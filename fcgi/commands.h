/*
 * commands.h - the admin commands of the binary: `sse-fcgi prune` (retention) and
 * `sse-fcgi --check` (a deployment seen as the web server's user). main.c dispatches to
 * them before anything of the responder starts.
 *
 * Both print plain lines for a person: results on stdout, usage and errors on stderr. Both
 * return the process exit status. Not thread-safe: call from main() only.
 */
#ifndef SSE_COMMANDS_H
#define SSE_COMMANDS_H

/* `sse-fcgi prune ...`: argv[0] is "prune". Returns 0 when done (also when nothing had to
 * go), 1 on an error (after what was committed), 2 on a usage error. */
int commands_prune(int argc, char **argv);

/* `sse-fcgi --check ...` (or `check`): argv[0] is the command. Returns 0 when every check
 * passed, 1 when one failed, 2 on a usage error. */
int commands_check(int argc, char **argv);

#endif
