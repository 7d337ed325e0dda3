/*
 * tap.h - a tiny TAP producer for the unit tests, run under prove.
 *
 * Typed assertions print both sides on failure. Every test binary calls
 * tap_done() last, which prints the plan and returns the exit status.
 * tap_guard() copies bytes so that they end exactly at a PROT_NONE page:
 * a parser that reads one byte past its input crashes instead of passing.
 */
#ifndef TIDINGS_TAP_H
#define TIDINGS_TAP_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int tap_count, tap_failed;

static inline int tap_ok_(int cond, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#include <stdarg.h>

static inline int tap_ok_(int cond, const char *file, int line, const char *fmt, ...)
{
	va_list ap;
	tap_count++;
	printf("%s %d - ", cond ? "ok" : "not ok", tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond) {
		tap_failed++;
		printf("#   failed at %s:%d\n", file, line);
	}
	fflush(stdout);
	return cond;
}

#define ok(cond, ...) tap_ok_(!!(cond), __FILE__, __LINE__, __VA_ARGS__)

#define is_int(got, want, ...)                                                                     \
	do {                                                                                       \
		long long g_ = (long long)(got), w_ = (long long)(want);                           \
		if (!ok(g_ == w_, __VA_ARGS__))                                                    \
			printf("#   got: %lld\n#   expected: %lld\n", g_, w_);                     \
	} while (0)

#define is_mem(got, glen, want, wlen, ...)                                                         \
	do {                                                                                       \
		size_t gl_ = (glen), wl_ = (wlen);                                                 \
		const void *gp_ = (got), *wp_ = (want);                                            \
		if (!ok(gl_ == wl_ && (gl_ == 0 || memcmp(gp_, wp_, gl_) == 0), __VA_ARGS__))      \
			printf("#   got: '%.*s' (%zu)\n#   expected: '%.*s' (%zu)\n", (int)gl_,    \
			       (const char *)gp_, gl_, (int)wl_, (const char *)wp_, wl_);          \
	} while (0)

#define is_str(got, want, ...)                                                                     \
	do {                                                                                       \
		const char *gs_ = (got), *ws_ = (want);                                            \
		if (!ok(gs_ && ws_ && strcmp(gs_, ws_) == 0, __VA_ARGS__))                         \
			printf("#   got: '%s'\n#   expected: '%s'\n", gs_ ? gs_ : "(null)",        \
			       ws_ ? ws_ : "(null)");                                              \
	} while (0)

static inline void tap_diag(const char *msg)
{
	printf("# %s\n", msg);
}

/* Returns a copy of p[0..n) placed so that its last byte is followed by an
 * inaccessible page. Release with tap_unguard(). */
static inline void *tap_guard(const void *p, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t span = (n + page - 1) / page * page + page;
	char *m = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		perror("mmap");
		exit(2);
	}
	mprotect(m + span - page, page, PROT_NONE);
	char *dst = m + span - page - n;
	if (n)
		memcpy(dst, p, n);
	return dst;
}

static inline void tap_unguard(void *p, size_t n)
{
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	size_t span = (n + page - 1) / page * page + page;
	char *end = (char *)p + n + page;
	munmap(end - span, span);
}

static inline int tap_done(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
