/*
 * server.h - a process's requests: FastCGI (an accepting thread and the event loop's thread)
 * or plain CGI (one request, the loop in the main thread).
 */
#ifndef SSE_SERVER_H
#define SSE_SERVER_H

#include "config.h"

/* Serves FastCGI requests until shutdown_fd becomes readable (SIGTERM) or accept fails.
 * The calling thread accepts; call it with the shutdown signals unblocked, since every
 * thread it starts blocks them. Returns the process's exit status. */
int server_run_fastcgi(const struct config *process, int shutdown_fd);

/* Serves the one request of plain CGI (the environment, stdout). Returns the exit status. */
int server_run_cgi(const struct config *process, int shutdown_fd);

#endif
