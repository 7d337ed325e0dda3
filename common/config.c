#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Reads a whole small file, trimming one trailing newline (as `echo >` leaves). */
static char *read_small_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	char tmp[65536];
	size_t n = fread(tmp, 1, sizeof(tmp) - 1, f);
	fclose(f);
	while (n > 0 && (tmp[n - 1] == '\n' || tmp[n - 1] == '\r'))
		n--;
	tmp[n] = '\0';
	return strdup(tmp);
}

/* Value of variable `name` or of `name_FILE`; heap string or NULL. An
 * empty variable counts as unset unless keep_empty. */
static char *env_value(const char *name, size_t len, int keep_empty)
{
	char var[128], fvar[140];
	if (len >= sizeof(var))
		return NULL;
	memcpy(var, name, len);
	var[len] = '\0';
	const char *v = getenv(var);
	if (v && (*v || keep_empty))
		return strdup(v);
	snprintf(fvar, sizeof(fvar), "%s_FILE", var);
	v = getenv(fvar);
	if (v && *v)
		return read_small_file(v);
	return NULL;
}

static int parse_int(const char *s, int64_t *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, int *out)
{
	static const char *const yes[] = {"1", "true", "yes", "on", "True", "TRUE"};
	static const char *const no[] = {"0", "false", "no", "off", "False", "FALSE", ""};
	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++)
		if (strcmp(s, yes[i]) == 0)
			return *out = 1, 0;
	for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++)
		if (strcmp(s, no[i]) == 0)
			return *out = 0, 0;
	return -1;
}

/* Stores text into the option's field. scale applies to integers. */
static int store(const config_opt *o, void *cfg, const char *text, int64_t scale, char *err,
                 size_t errlen, const char *source)
{
	char *field = (char *)cfg + o->offset;
	switch (o->type) {
	case CFG_STR:
		free(*(char **)field);
		*(char **)field = text ? strdup(text) : NULL;
		return 0;
	case CFG_INT: {
		int64_t v;
		if (parse_int(text, &v) < 0) {
			snprintf(err, errlen, "%s: '%s' is not an integer", source, text);
			return -1;
		}
		if (scale > 1 && (v > INT64_MAX / scale || v < INT64_MIN / scale)) {
			snprintf(err, errlen, "%s: '%s' is out of range", source, text);
			return -1;
		}
		v *= scale > 0 ? scale : 1;
		if (v < o->min || v > o->max) {
			snprintf(err, errlen, "%s: %lld is outside [%lld, %lld]", source,
			         (long long)v, (long long)o->min, (long long)o->max);
			return -1;
		}
		*(int64_t *)field = v;
		return 0;
	}
	case CFG_BOOL:
		if (parse_bool(text, (int *)field) < 0) {
			snprintf(err, errlen, "%s: '%s' is not a boolean", source, text);
			return -1;
		}
		return 0;
	}
	return -1;
}

/* Finds the value of one option in the environment: own variable first,
 * then aliases. Sets *alias when the value came from an alias. */
static char *lookup_env(const config_opt *o, const char **source, int *alias)
{
	int keep_empty = o->type == CFG_STR && (o->flags & CFG_EMPTY);
	char *v = env_value(o->env, strlen(o->env), keep_empty);
	*alias = 0;
	*source = o->env;
	if (v || !o->aliases)
		return v;
	for (const char *p = o->aliases; *p;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		v = env_value(p, len, keep_empty);
		if (v) {
			*alias = 1;
			*source = p;
			return v;
		}
		p += len + (comma ? 1 : 0);
	}
	return NULL;
}

static int load_defaults_and_env(const config_opt *tab, void *cfg, char *err, size_t errlen,
                                 void (*warn)(const char *))
{
	for (const config_opt *o = tab; o->name; o++) {
		if (o->def && store(o, cfg, o->def, 1, err, errlen, o->name) < 0)
			return -1;
		const char *source;
		int alias;
		char *v = lookup_env(o, &source, &alias);
		if (!v)
			continue;
		char src[128];
		const char *comma = strchr(source, ',');
		snprintf(src, sizeof(src), "%.*s",
		         comma ? (int)(comma - source) : (int)strlen(source), source);
		int rc = store(o, cfg, v, alias ? o->alias_scale : 1, err, errlen, src);
		free(v);
		if (rc < 0 && alias) {
			char msg[600];
			snprintf(msg, sizeof(msg), "%s; using the default of %s", err, o->name);
			if (warn)
				warn(msg);
			if (o->def && store(o, cfg, o->def, 1, err, errlen, o->name) < 0)
				return -1;
		} else if (rc < 0) {
			return -1;
		}
	}
	return 0;
}

int config_load(const config_opt *tab, void *cfg, int argc, char **argv, char *err, size_t errlen,
                void (*warn)(const char *msg))
{
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
			return 1;
	if (load_defaults_and_env(tab, cfg, err, errlen, warn) < 0)
		return -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strncmp(a, "--", 2) != 0) {
			snprintf(err, errlen, "unexpected argument '%s'", a);
			return -1;
		}
		a += 2;
		const char *eq = strchr(a, '=');
		size_t nlen = eq ? (size_t)(eq - a) : strlen(a);
		const config_opt *o = tab;
		while (o->name && !(strlen(o->name) == nlen && strncmp(o->name, a, nlen) == 0))
			o++;
		if (!o->name) {
			snprintf(err, errlen, "unknown option '--%.*s' (see --help)", (int)nlen, a);
			return -1;
		}
		const char *val = eq ? eq + 1 : NULL;
		if (!val && o->type == CFG_BOOL)
			val = "1";
		if (!val && i + 1 < argc)
			val = argv[++i];
		if (!val) {
			snprintf(err, errlen, "option '--%s' needs a value", o->name);
			return -1;
		}
		char src[80];
		snprintf(src, sizeof(src), "--%s", o->name);
		if (store(o, cfg, val, 1, err, errlen, src) < 0)
			return -1;
	}
	return 0;
}

void config_help(const config_opt *tab, const char *usage, FILE *out)
{
	fprintf(out, "%s\n\nOptions (flag, environment variable, default):\n", usage);
	for (const config_opt *o = tab; o->name; o++) {
		fprintf(out, "  --%-22s %s", o->name, o->env);
		if (o->aliases)
			fprintf(out, " (or %s)", o->aliases);
		fprintf(out, "\n      %s", o->help);
		if (o->def && !(o->flags & CFG_SECRET))
			fprintf(out, " [default: %s]", *o->def ? o->def : "\"\"");
		if (o->type == CFG_INT)
			fprintf(out, " [range %lld..%lld]", (long long)o->min, (long long)o->max);
		fprintf(out, "\n");
	}
	fprintf(out,
	        "\nAny variable X may be given as X_FILE, naming a file that holds the value.\n");
}

/* Finds the password of scheme://[user]:password@host; 1 and its span, or 0. */
static int url_password(const char *s, const char **pw, size_t *len)
{
	const char *p = strstr(s, "://");
	const char *at = strrchr(s, '@');
	if (!p || !at || at < p)
		return 0;
	const char *colon = memchr(p + 3, ':', (size_t)(at - p - 3));
	if (!colon)
		return 0;
	*pw = colon + 1;
	*len = (size_t)(at - colon - 1);
	return 1;
}

void config_dump(const config_opt *tab, const void *cfg, FILE *out)
{
	const char *pw;
	size_t pwlen;
	for (const config_opt *o = tab; o->name; o++) {
		const char *field = (const char *)cfg + o->offset;
		fprintf(out, "%s = ", o->name);
		switch (o->type) {
		case CFG_STR: {
			const char *s = *(char *const *)field;
			if (!s)
				fprintf(out, "(unset)\n");
			else if (o->flags & CFG_SECRET)
				fprintf(out, "%s\n", *s ? "******** (set)" : "(empty)");
			else if (url_password(s, &pw, &pwlen))
				/* a URL with a password: scheme://user:***@host */
				fprintf(out, "%.*s***%s\n", (int)(pw - s), s, pw + pwlen);
			else
				fprintf(out, "%s\n", s);
			break;
		}
		case CFG_INT: fprintf(out, "%lld\n", (long long)*(const int64_t *)field); break;
		case CFG_BOOL: fprintf(out, "%s\n", *(const int *)field ? "true" : "false"); break;
		}
	}
}
