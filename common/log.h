/*
 * log.h - one line per event on stdout: JSON lines by default, a human
 * format for terminals. The level is tested before anything is formatted,
 * so a debug line on a hot path costs one comparison when debug is off.
 * Leaf modules never log; the process layer logs once per event with the
 * ids (conn, sid, user, stream) inside the message as key=value pairs.
 */
#ifndef TIDINGS_LOG_H
#define TIDINGS_LOG_H

#include <stddef.h>

enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_OFF };
enum { LOG_FORMAT_JSON = 0, LOG_FORMAT_TEXT };

extern int log_level;

/* Sets the threshold and the format; `name` (e.g. "gateway") is put in each
 * line so interleaved logs of several processes stay apart. */
void log_init(int level, int format, const char *name);

/* Parses "debug"/"info"/"warn"/"error"/"off"; -1 when unknown. */
int log_level_parse(const char *s);

/* Checks the log-level and log-format settings every binary has; -1 with
 * the reason in err when one is not understood. */
int log_settings_check(const char *level, const char *format, char *err, size_t errlen);

void log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...)                                                                             \
	do {                                                                                       \
		if (log_level <= LOG_DEBUG)                                                        \
			log_write(LOG_DEBUG, __VA_ARGS__);                                         \
	} while (0)
#define log_info(...)                                                                              \
	do {                                                                                       \
		if (log_level <= LOG_INFO)                                                         \
			log_write(LOG_INFO, __VA_ARGS__);                                          \
	} while (0)
#define log_warn(...)                                                                              \
	do {                                                                                       \
		if (log_level <= LOG_WARN)                                                         \
			log_write(LOG_WARN, __VA_ARGS__);                                          \
	} while (0)
#define log_error(...)                                                                             \
	do {                                                                                       \
		if (log_level <= LOG_ERROR)                                                        \
			log_write(LOG_ERROR, __VA_ARGS__);                                         \
	} while (0)

/* Copies at most `max` bytes of untrusted data into out (size outsz) with
 * every non-printable byte as \xNN, for debug samples of bad input. */
const char *log_sample(char *out, unsigned outsz, const void *data, unsigned long len,
                       unsigned max);

#endif
