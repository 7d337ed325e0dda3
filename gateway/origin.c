#include "origin.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ORIGINS 64

static char *origins[MAX_ORIGINS];
static int norigins, wildcard;

/* Canonical form: no default port, no trailing slash; with `lower`,
 * lower-case scheme and host (for the configured list). A browser always
 * serialises an Origin in lower case, so an incoming Origin is compared
 * as sent: odd case is not a browser and is refused. Returns 0 or -1 when
 * s is not scheme://host[:port]. */
static int canon(slice s, char *out, size_t cap, int lower)
{
	const char *p = s.base, *end = s.base + s.len;
	const char *sep = NULL;
	for (const char *q = p; q + 2 < end; q++)
		if (q[0] == ':' && q[1] == '/' && q[2] == '/') {
			sep = q;
			break;
		}
	if (!sep || sep == p || s.len + 1 > cap)
		return -1;
	size_t o = 0;
	for (const char *q = p; q < sep; q++) {
		if (!isalnum((unsigned char)*q) && *q != '+' && *q != '-' && *q != '.')
			return -1;
		out[o++] = lower ? (char)tolower((unsigned char)*q) : *q;
	}
	size_t scheme_len = o;
	memcpy(out + o, "://", 3);
	o += 3;
	const char *h = sep + 3;
	if (h < end && end[-1] == '/')
		end--;
	if (h >= end)
		return -1;
	for (const char *q = h; q < end; q++) {
		unsigned char ch = (unsigned char)*q;
		if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '@' || ch == '?' || ch == '#')
			return -1;
		out[o++] = lower ? (char)tolower(ch) : (char)ch;
	}
	out[o] = '\0';
	/* Drop a default port so https://a and https://a:443 compare equal. */
	const char *dflt = NULL;
	if (scheme_len == 4 && memcmp(out, "http", 4) == 0)
		dflt = ":80";
	else if (scheme_len == 5 && memcmp(out, "https", 5) == 0)
		dflt = ":443";
	if (dflt && o > strlen(dflt) && strcmp(out + o - strlen(dflt), dflt) == 0)
		out[o - strlen(dflt)] = '\0';
	return 0;
}

int origin_init(const char *list, const char **err)
{
	norigins = 0;
	wildcard = 0;
	const char *p = list;
	while (p && *p) {
		const char *semi = strchr(p, ';');
		size_t len = semi ? (size_t)(semi - p) : strlen(p);
		while (len && isspace((unsigned char)*p))
			p++, len--;
		while (len && isspace((unsigned char)p[len - 1]))
			len--;
		if (len == 1 && *p == '*') {
			wildcard = 1;
		} else if (len) {
			char tmp[512];
			if (canon(slice_make(p, len), tmp, sizeof(tmp), 1) < 0) {
				*err = "an entry is not scheme://host[:port]";
				return -1;
			}
			if (norigins == MAX_ORIGINS) {
				*err = "too many origins";
				return -1;
			}
			origins[norigins++] = strdup(tmp);
		}
		p = semi ? semi + 1 : NULL;
	}
	return 0;
}

int origin_wildcard(void)
{
	return wildcard;
}

int origin_allowed(const http_request *req)
{
	slice o, host;
	if (!http_header_get(req, "origin", &o))
		return 1;
	if (wildcard)
		return 1;
	char c[512];
	if (canon(o, c, sizeof(c), 0) < 0)
		return 0; /* includes "null" */
	for (int i = 0; i < norigins; i++)
		if (strcmp(c, origins[i]) == 0)
			return 1;
	if (norigins == 0 && http_header_get(req, "host", &host) && host.len < 256) {
		/* Same origin: the browser's page came from the host it connects to. */
		const char *h = strstr(c, "://") + 3;
		return strlen(h) == host.len && memcmp(h, host.base, host.len) == 0;
	}
	return 0;
}
