#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int log_level = LOG_INFO;
static int log_format = LOG_FORMAT_JSON;
static const char *log_name = "tidings";

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(int level, int format, const char *name)
{
	log_level = level;
	log_format = format;
	if (name)
		log_name = name;
}

int log_level_parse(const char *s)
{
	for (int i = 0; i < 4; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return LOG_WARN;
	if (strcmp(s, "off") == 0)
		return LOG_OFF;
	return -1;
}

int log_settings_check(const char *level, const char *format, char *err, size_t errlen)
{
	if (log_level_parse(level) < 0) {
		snprintf(err, errlen, "log-level: unknown level '%s'", level);
		return -1;
	}
	if (strcmp(format, "json") != 0 && strcmp(format, "text") != 0) {
		snprintf(err, errlen, "log-format: '%s' is neither json nor text", format);
		return -1;
	}
	return 0;
}

/* JSON-escapes msg into out; the message is ours but may quote client data
 * that log_sample already made printable. */
static size_t json_escape(char *out, size_t cap, const char *msg)
{
	size_t o = 0;
	for (const unsigned char *p = (const unsigned char *)msg; *p && o + 7 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			out[o++] = '\\';
			out[o++] = (char)*p;
		} else if (*p < 0x20) {
			o += (size_t)snprintf(out + o, cap - o, "\\u%04x", *p);
		} else {
			out[o++] = (char)*p;
		}
	}
	out[o] = '\0';
	return o;
}

void log_write(int level, const char *fmt, ...)
{
	char msg[2048], esc[4200], ts[40];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	size_t n = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + n, sizeof(ts) - n, ".%03dZ", (int)(tv.tv_usec / 1000));

	const char *lv = level_names[level < 0 ? 0 : level > 3 ? 3 : level];
	if (log_format == LOG_FORMAT_TEXT) {
		fprintf(stdout, "%s %s[%d] %-5s %s\n", ts, log_name, (int)getpid(), lv, msg);
	} else {
		json_escape(esc, sizeof(esc), msg);
		fprintf(
		    stdout,
		    "{\"ts\":\"%s\",\"proc\":\"%s\",\"pid\":%d,\"level\":\"%s\",\"msg\":\"%s\"}\n",
		    ts, log_name, (int)getpid(), lv, esc);
	}
	fflush(stdout);
}

const char *log_sample(char *out, unsigned outsz, const void *data, unsigned long len, unsigned max)
{
	const unsigned char *p = data;
	unsigned o = 0;
	for (unsigned long i = 0; i < len && i < max && o + 5 < outsz; i++) {
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			out[o++] = (char)p[i];
		else
			o += (unsigned)snprintf(out + o, outsz - o, "\\x%02x", p[i]);
	}
	if (len > max && o + 4 < outsz) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}
