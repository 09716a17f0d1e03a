# sse-fcgi - plain GNU make, one file (STYLE §9).
#
#   make run    build, install what is missing, start the demo on 127.0.0.1:8080
#   make test   build, lint, run the whole suite; last line "N passed, N failed"
#
# Builds with different flags never share objects: BUILD selects the directory.

PREFIX  ?= /usr/local
BUILD   ?= build
CC      ?= cc
CFLAGS  ?= -O2

PKGS      := fcgi sqlite3 libcjson
# nginx: the fourth front end of the tests (issue 15). Debian 12's nginx package is the
# binary, with ngx_http_fastcgi_module built in; nginx-common brings fastcgi_params.
# make deb and the deb suite (which builds the package, so make test needs them too):
# debhelper builds the packages, lintian checks them.
DEB_BUILD_PKGS := debhelper lintian fakeroot dpkg-dev
DEB_PKGS  := pkg-config libfcgi-dev libsqlite3-dev libcjson-dev libssl-dev check sqlite3 \
             lighttpd lighttpd-modules-lua apache2 libapache2-mod-fcgid spawn-fcgi curl \
             nginx valgrind chromium chromium-driver postgresql libpq-dev \
             python3-psycopg php-cli php-pgsql php-sqlite3 mandoc $(DEB_BUILD_PKGS)
# make fuzz only: libclang-rt-dev holds libFuzzer and the sanitizer runtimes, which clang
# only recommends (deps installs without recommends). Not needed by make test.
FUZZ_DEB_PKGS := clang libclang-rt-dev
# make bench only: nginx + nchan, the reference column of every scenario (nginx-light is
# nginx with the echo module).
BENCH_DEB_PKGS := nginx-light libnginx-mod-nchan

# Lazily evaluated (=), so that `make test` on a fresh machine reads them after `deps`.
# The responder compiles against libcrypto's headers but does not link it: fcgi/crypto.c
# loads it when SSE_AUTH needs it (issue 12). The test runner links it (tests/lib/jwt.c).
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS) libcrypto)
PKG_LIBS     = $(shell pkg-config --libs $(PKGS))
CRYPTO_LIBS  = $(shell pkg-config --libs libcrypto)
CHECK_CFLAGS = $(shell pkg-config --cflags check)
CHECK_LIBS   = $(shell pkg-config --libs check)
# libpq is the test runner's (tests/lib/pg.c, the PostgreSQL suites) and the bench producer's
# (--pg, scenario h), never the responder's.
PQ_CFLAGS    = $(shell pkg-config --cflags libpq)
PQ_LIBS      = $(shell pkg-config --libs libpq)

WARNINGS := -Wall -Wextra -Werror -Wformat=2 -Wshadow -Wstrict-prototypes \
            -Wmissing-prototypes -Wwrite-strings
# CPPFLAGS: dpkg-buildflags puts -D_FORTIFY_SOURCE=2 there (make deb).
ALL_CFLAGS = $(CPPFLAGS) $(CFLAGS) $(EXTRA_CFLAGS) -std=c11 -D_POSIX_C_SOURCE=200809L -g \
             -MMD -MP $(WARNINGS) $(PKG_CFLAGS) -pthread

SANITIZE_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
                  -fno-omit-frame-pointer -O1 -g

# make fuzz (issue 5): libFuzzer targets over the pure modules, always built with clang.
# -fno-sanitize-recover=all makes a UBSan report abort, so libFuzzer keeps the input.
FUZZ_CC      := clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   ?= -max_len=8192 -timeout=10
FUZZ_TARGETS := fuzz_path fuzz_query fuzz_event_id fuzz_frame fuzz_auth fuzz_ring fuzz_shring \
                fuzz_link_msg fuzz_fcgi_out
FUZZ_BIN     := $(FUZZ_TARGETS:%=$(BUILD)/fuzz/%)
FUZZ_CFLAGS   = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -fno-omit-frame-pointer -g -O1 -std=c11 -D_POSIX_C_SOURCE=200809L \
                $(WARNINGS) -I. $(shell pkg-config --cflags libcjson)
FUZZ_LIBS     = $(shell pkg-config --libs libcjson)

# Pure modules: no I/O, no clock, no environment (STYLE §1). Unit tests link only these.
# crypto.c loads libcrypto for auth.c (dlopen): the dynamic linker's work, not I/O.
PURE_SRC   := fcgi/buf.c fcgi/params.c fcgi/filter.c fcgi/sse.c fcgi/http.c fcgi/config.c \
              fcgi/auth.c fcgi/crypto.c fcgi/cli.c fcgi/fcgi_out.c
SRC        := $(PURE_SRC) fcgi/log.c fcgi/loop.c fcgi/conn.c fcgi/request.c fcgi/stream.c fcgi/server.c \
              fcgi/main.c fcgi/commands.c store/db.c store/store.c \
              store/wait.c store/ring.c store/shring.c store/hub.c store/hub_file.c \
              store/hub_link.c store/link_msg.c store/prune.c store/deploycheck.c
TEST_SRC   := tests/main.c $(wildcard tests/unit/*.c tests/integration/*.c tests/lib/*.c)

# sse-fcgi-relay (issue 14): its own binary, so that the responder never links libpq. Only
# relay/upstream.c includes libpq-fe.h; store/replica.c is the one writer of its rows.
# config.c (option numbers, log levels) brings auth.c, and so cJSON, along.
RELAY_SRC  := relay/main.c relay/upstream.c store/replica.c store/db.c fcgi/log.c fcgi/cli.c \
              fcgi/config.c fcgi/auth.c fcgi/crypto.c
RELAY_OBJ  := $(RELAY_SRC:%.c=$(BUILD)/obj/%.o)
RELAY_BIN  := $(BUILD)/sse-fcgi-relay
PG_CFLAGS   = $(shell pkg-config --cflags libpq)
PG_LIBS     = $(shell pkg-config --libs libpq)
SQLITE_LIBS = $(shell pkg-config --libs sqlite3)

OBJ        := $(SRC:%.c=$(BUILD)/obj/%.o)
TEST_OBJ   := $(TEST_SRC:%.c=$(BUILD)/obj/%.o)
# The suite links every module but main.c (store/ for EXPLAIN QUERY PLAN).
TESTED_OBJ := $(filter-out $(BUILD)/obj/fcgi/main.o,$(OBJ))

BIN        := $(BUILD)/sse-fcgi
ES_DIR     := tests/eventsource
TEST_BIN   := $(BUILD)/tests/run-tests

.PHONY: all deps es-deps test test-suite sanitize soak memory run bench install uninstall clean \
        lint fuzz deb

all: $(BIN) $(RELAY_BIN)

$(BIN): $(OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS) $(LDFLAGS)

$(RELAY_BIN): $(RELAY_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(SQLITE_LIBS) $(PG_LIBS) $(shell pkg-config --libs libcjson) -ldl $(LDFLAGS)

$(BUILD)/obj/relay/upstream.o: EXTRA_CFLAGS += $(PG_CFLAGS)

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) $(PQ_CFLAGS) -I. -c -o $@ $<

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(TEST_BIN): $(TEST_OBJ) $(TESTED_OBJ)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $^ $(PKG_LIBS) $(CRYPTO_LIBS) $(CHECK_LIBS) $(PQ_LIBS) $(LDFLAGS)

# Installs only what dpkg-query reports missing; a no-op (well under a second) otherwise.
deps:
	@missing=$$(for p in $(DEB_PKGS) $(EXTRA_DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' \
	    || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "make deps: installing" $$missing; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    export DEBIAN_FRONTEND=noninteractive; \
	    $$SUDO apt-get install -y -q --no-install-recommends $$missing \
	    || { $$SUDO apt-get update -q && \
	         $$SUDO apt-get install -y -q --no-install-recommends $$missing; }; \
	fi
	@$(MAKE) --no-print-directory es-deps

# The standard EventSource client of the tests (issue 11): npm's `eventsource`, pinned in
# tests/eventsource/package-lock.json, installed there (not globally) with `npm ci` when
# node_modules is missing or older than the lock. Node.js from Debian when there is none
# (Debian 12's nodejs is 18; the pinned version runs on 18 and 20).
es-deps:
	@if ! command -v node >/dev/null || ! command -v npm >/dev/null; then \
	    echo "make deps: installing nodejs npm"; \
	    SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	    export DEBIAN_FRONTEND=noninteractive; \
	    $$SUDO apt-get install -y -q --no-install-recommends nodejs npm \
	    || { $$SUDO apt-get update -q && \
	         $$SUDO apt-get install -y -q --no-install-recommends nodejs npm; }; \
	fi
	@if [ ! $(ES_DIR)/node_modules/.package-lock.json -nt $(ES_DIR)/package-lock.json ]; then \
	    echo "make deps: npm ci in $(ES_DIR)"; \
	    cd $(ES_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

test: deps
	@$(MAKE) --no-print-directory all lint
	@$(MAKE) --no-print-directory test-suite

test-suite: $(BIN) $(TEST_BIN)
	SSE_FCGI_BIN=$(abspath $(BIN)) SSE_SCHEMA=$(abspath schema.sql) \
	SSE_TEST_CONF=$(abspath tests/conf) SSE_SRC_DIR=$(abspath .) \
	SSE_ARTIFACT_DIR=$(abspath $(BUILD)/artifacts) $(TEST_BIN)

# The long soak (issue 5): 200 streams, 1,000,000 events, random drops and resumes; it
# prints its figures. `make test` runs the same test with 20,000 events.
soak: deps
	@SOAK_EVENTS=$${SOAK_EVENTS:-1000000} SOAK_TIMEOUT_S=$${SOAK_TIMEOUT_S:-1800} \
	    CK_RUN_SUITE=soak $(MAKE) --no-print-directory test-suite

# Issue 12: what one process costs behind Apache + mod_fcgid (one process per stream), as
# Pss per process and its split by mapping, with 200 streams open. `make test` runs the same
# test with 40.
memory: deps
	@MEMORY_STREAMS=$${MEMORY_STREAMS:-200} CK_RUN_SUITE=memory_fcgid \
	    $(MAKE) --no-print-directory test-suite

# The responder's sanitizer reports go to stderr, which the integration tests capture in
# each server's log and fail on (STYLE §8).
sanitize: deps
	@CK_TIMEOUT_MULTIPLIER=4 SSE_SANITIZED=1 $(MAKE) --no-print-directory BUILD=build/sanitize \
	    CFLAGS="$(SANITIZE_FLAGS)" all test-suite

# Regression inputs first, then FUZZ_SECONDS per target on a scratch copy of its seeds
# (tests/fuzz/run.sh); one line per target, non-zero exit on any crash.
fuzz:
	@$(MAKE) --no-print-directory deps EXTRA_DEB_PKGS="$(FUZZ_DEB_PKGS)"
	@$(MAKE) --no-print-directory -s $(FUZZ_BIN)
	@tests/fuzz/run.sh $(BUILD)/fuzz $(FUZZ_SECONDS) "$(FUZZ_FLAGS)" $(FUZZ_TARGETS)

# Each target links only the modules it feeds.
$(BUILD)/fuzz/fuzz_path $(BUILD)/fuzz/fuzz_query $(BUILD)/fuzz/fuzz_event_id: fcgi/params.c
$(BUILD)/fuzz/fuzz_frame: fcgi/sse.c fcgi/buf.c
$(BUILD)/fuzz/fuzz_fcgi_out: fcgi/fcgi_out.c fcgi/buf.c
$(BUILD)/fuzz/fuzz_auth: fcgi/auth.c fcgi/crypto.c
$(BUILD)/fuzz/fuzz_auth: FUZZ_LIBS += $(shell pkg-config --libs libcrypto)
$(BUILD)/fuzz/fuzz_ring: store/ring.c store/store.c store/db.c
$(BUILD)/fuzz/fuzz_shring: store/shring.c store/store.c store/db.c
$(BUILD)/fuzz/fuzz_link_msg: store/link_msg.c
$(BUILD)/fuzz/fuzz_ring $(BUILD)/fuzz/fuzz_shring: FUZZ_LIBS += $(shell pkg-config --libs sqlite3)
$(BUILD)/fuzz/%: tests/fuzz/%.c tests/fuzz/check.h $(wildcard fcgi/*.h store/*.h)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $(filter %.c,$^) $(FUZZ_LIBS)

run: deps
	@$(MAKE) --no-print-directory all
	@deploy/demo/run.sh $(abspath $(BIN))

# Issue 4: the scenarios of the Performance table in README.md and issue 13's g (10,000
# streams), against a real lighttpd, issue 14's h (two web nodes, each with its relay, on one
# PostgreSQL log), and f1-f4 against Apache + mod_fcgid; each also against nginx + nchan.
# BENCH_SCENARIOS="a c" and BENCH_SECONDS=5 run a part, shorter.
BENCH_TOOLS := $(BUILD)/bench/loadgen $(BUILD)/bench/producer

bench: deps $(BIN) $(RELAY_BIN) $(BENCH_TOOLS)
	@$(MAKE) --no-print-directory deps EXTRA_DEB_PKGS="$(BENCH_DEB_PKGS)"
	@tests/bench/run.sh $(abspath $(BIN)) $(abspath schema.sql) $(abspath $(BUILD)/bench) \
	    $(abspath $(BUILD)/bench-run) $(abspath $(RELAY_BIN))

$(BUILD)/bench/loadgen: tests/bench/loadgen.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -O2 -o $@ $< $(PKG_LIBS) $(LDFLAGS)

$(BUILD)/bench/producer: tests/bench/producer.c
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) $(PQ_CFLAGS) -O2 -o $@ $< $(PKG_LIBS) $(PQ_LIBS) $(LDFLAGS)

# make install / make uninstall. Every file install puts in place, one entry each, as
# <mode>:<source>:<path below PREFIX>; uninstall removes exactly these, so the two cannot
# drift. The directories install had to create (below DESTDIR) it records in INSTALL_DIRS,
# and uninstall removes those of them that are empty then, deepest first, and no other.
INSTALL_FILES := \
    0755:$(BIN):bin/sse-fcgi \
    0755:$(RELAY_BIN):bin/sse-fcgi-relay \
    0644:schema.sql:share/sse-fcgi/schema.sql \
    0644:deploy/postgresql/schema.sql:share/sse-fcgi/postgresql/schema.sql \
    0644:deploy/viewer/index.html:share/sse-fcgi/viewer/index.html \
    0644:deploy/viewer/viewer.js:share/sse-fcgi/viewer/viewer.js \
    0644:deploy/viewer/viewer.css:share/sse-fcgi/viewer/viewer.css \
    0644:man/sse-fcgi.1:share/man/man1/sse-fcgi.1 \
    0644:man/sse-fcgi-relay.1:share/man/man1/sse-fcgi-relay.1 \
    0644:man/sse-fcgi.7:share/man/man7/sse-fcgi.7
INSTALL_SOURCES := $(foreach f,$(INSTALL_FILES),$(word 2,$(subst :, ,$(f))))
INSTALL_DIRS    := share/sse-fcgi/installed-dirs

# A second install keeps the first one's record, so uninstall still removes its directories.
install: $(INSTALL_SOURCES)
	@set -e; created=$$(mktemp); trap 'rm -f "$$created"' EXIT; \
	for f in $(INSTALL_FILES); do \
	    mode=$${f%%:*}; rest=$${f#*:}; src=$${rest%%:*}; dest='$(PREFIX)'/$${rest#*:}; \
	    p=; for c in $$(dirname "$$dest" | tr / ' '); do p=$$p/$$c; \
	        [ -d '$(DESTDIR)'"$$p" ] || echo "$$p" >> "$$created"; done; \
	    echo "install -m $$mode $$src $(DESTDIR)$$dest"; \
	    install -d '$(DESTDIR)'"$$(dirname "$$dest")"; \
	    install -m "$$mode" "$$src" '$(DESTDIR)'"$$dest"; \
	done; \
	list='$(DESTDIR)$(PREFIX)/$(INSTALL_DIRS)'; \
	if [ -f "$$list" ]; then cat "$$list" >> "$$created"; fi; \
	LC_ALL=C sort -u -o "$$created" "$$created"; \
	install -m 0644 "$$created" "$$list"

# Builds nothing and needs no build: only the paths of INSTALL_FILES.
uninstall:
	@list='$(DESTDIR)$(PREFIX)/$(INSTALL_DIRS)'; \
	dirs=$$(LC_ALL=C sort -r "$$list" 2>/dev/null || true); \
	for f in $(INSTALL_FILES); do \
	    dest='$(DESTDIR)$(PREFIX)'/$${f##*:}; \
	    if [ -e "$$dest" ] || [ -L "$$dest" ]; then echo "rm -f $$dest"; rm -f "$$dest"; fi; \
	done; \
	if [ -f "$$list" ]; then echo "rm -f $$list"; rm -f "$$list"; fi; \
	printf '%s\n' "$$dirs" | while IFS= read -r d; do \
	    if [ -n "$$d" ] && rmdir '$(DESTDIR)'"$$d" 2>/dev/null; then \
	        echo "rmdir $(DESTDIR)$$d"; fi; \
	done

# make deb (issue 15): sse-fcgi_<version>_<arch>.deb and sse-fcgi-relay_<version>_<arch>.deb
# in DEB_DIR (build/deb/; the deb suite builds into its temp dir), built by dpkg-buildpackage
# from a copy of the tree with deploy/debian/ as its debian/ (DEB_DIR/sse-fcgi-<version>/,
# removed afterwards), so nothing is written outside DEB_DIR. The version is written once,
# CLI_VERSION in fcgi/cli.h; the changelog and the man pages' --version lines must agree
# with it. Rebuilt only when a file of the tree is newer than the package. make's own
# settings (MAKEFLAGS: BUILD=, CFLAGS= of make sanitize) stay out of the package build,
# which takes its flags from dpkg-buildflags. lintian fails it on any error.
VERSION    := $(shell sed -n 's/^\#define CLI_VERSION "\(.*\)"$$/\1/p' fcgi/cli.h)
DEB_DIR    ?= build/deb
DEB_SRC    := $(DEB_DIR)/sse-fcgi-$(VERSION)
DEB_FILE    = $(DEB_DIR)/sse-fcgi_$(VERSION)_$(shell dpkg --print-architecture).deb
DEB_TREE   := Makefile README.md schema.sql fcgi store relay man deploy
DEB_INPUTS := Makefile README.md schema.sql $(wildcard fcgi/* store/* relay/* man/* \
              deploy/*/* deploy/*/*/*)

deb: deps
	@$(MAKE) --no-print-directory $(DEB_FILE)

$(DEB_FILE): $(DEB_INPUTS)
	@changelog=$$(dpkg-parsechangelog -l deploy/debian/changelog -S Version); \
	if [ "$$changelog" != '$(VERSION)' ]; then \
	    echo "make deb: deploy/debian/changelog is at $$changelog, fcgi/cli.h at $(VERSION)"; \
	    exit 1; fi; \
	for page in sse-fcgi sse-fcgi-relay; do \
	    grep -qx ".Ql $$page $(VERSION)\( .\)\?" man/$$page.1 || { \
	    echo "make deb: man/$$page.1 does not print $$page $(VERSION) for --version"; \
	    exit 1; }; done
	rm -rf $(DEB_SRC) $(DEB_DIR)/sse-fcgi*_$(VERSION)_* && mkdir -p $(DEB_SRC)
	cp -R $(DEB_TREE) $(DEB_SRC)/ && cp -R deploy/debian $(DEB_SRC)/debian
	cd $(DEB_SRC) && env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL \
	    dpkg-buildpackage -b --no-sign -J$$(nproc)
	rm -rf $(DEB_SRC)
	lintian --fail-on error $(DEB_DIR)/sse-fcgi_$(VERSION)_*.changes

clean:
	rm -rf build

# STYLE §1: only main.c and stream.c include fcgiapp.h; only store/ includes sqlite3.h;
# pure modules read no clock, environment, file or socket.
lint:
	@fail=0; \
	for f in fcgi/*.c fcgi/*.h; do \
	    case $$f in fcgi/main.c|fcgi/conn.c) ;; \
	    *) if grep -q 'fcgiapp\.h' $$f; then echo "lint: $$f includes fcgiapp.h"; fail=1; fi;; \
	    esac; \
	    if grep -q 'sqlite3\.h' $$f; then echo "lint: $$f includes sqlite3.h"; fail=1; fi; \
	done; \
	for f in $(PURE_SRC) $(PURE_SRC:.c=.h); do \
	    if grep -nE '\b(getenv|time|clock_gettime|gettimeofday|fopen|open|read|write|recv|send|poll|printf|fprintf|syslog)\(' $$f \
	       | grep -v '^\s*[0-9]*:\s*\*' | grep -v '^[0-9]*: \* '; then \
	        echo "lint: pure module $$f does I/O"; fail=1; fi; \
	    if grep -qE '#include "(log|stream|\.\./store/store|\.\./store/wait)\.h"' $$f; then \
	        echo "lint: pure module $$f includes an impure header"; fail=1; fi; \
	done; \
	[ $$fail = 0 ] && echo "lint: ok"; exit $$fail

-include $(OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(RELAY_OBJ:.o=.d)
