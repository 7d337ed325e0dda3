/*
 * ident.h - the one rule for ids that become parts of Redis keys and room
 * names (user ids, room names, socket ids, idempotency keys):
 * [A-Za-z0-9._:@-]{1,max}. Anything else is refused, never escaped, so a
 * key can carry no glob characters, spaces, CR LF or braces.
 */
#ifndef TIDINGS_IDENT_H
#define TIDINGS_IDENT_H

#include <stddef.h>
#include <string.h>

static inline int ident_valid(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return 0;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '@' || c == '-'))
			return 0;
	}
	return 1;
}

#endif
