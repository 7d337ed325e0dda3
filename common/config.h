/*
 * config.h - configuration as one declarative table per binary.
 *
 * Each row names an option once: its --flag, its TIDINGS_* variable, the
 * ecosystem's aliases (Open WebUI's names, lower precedence, optionally in
 * other units), type, default and bounds. The same table drives parsing,
 * validation, --help and the startup dump. Precedence: --flag, then the
 * TIDINGS_* variable, then each alias in order, then the default; any
 * variable X may instead be given as X_FILE naming a file that holds the
 * value (for secrets mounted by Kubernetes). The parsed struct is read-only
 * afterwards.
 */
#ifndef TIDINGS_CONFIG_H
#define TIDINGS_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { CFG_STR, CFG_INT, CFG_BOOL };
/* CFG_EMPTY: a variable set to "" is the value "" (e.g. "off"), not unset:
 * for string options whose default is not empty. */
enum { CFG_SECRET = 1, CFG_EMPTY = 2 };

typedef struct config_opt {
	const char *name;    /* flag without dashes, e.g. "listen" */
	const char *env;     /* e.g. "TIDINGS_LISTEN" */
	const char *aliases; /* comma-separated alternative variables, or NULL */
	int alias_scale; /* CFG_INT: alias values are multiplied by this (e.g. s -> ms), 0 = 1 */
	int type;
	const char *def; /* default as text; NULL = unset (CFG_STR only) */
	int64_t min, max;
	size_t offset; /* of the char * / int64_t / int field in the config struct */
	unsigned flags;
	const char *help;
} config_opt;

#define CONFIG_END                                                                                 \
	{                                                                                          \
		NULL, NULL, NULL, 0, 0, NULL, 0, 0, 0, 0, NULL                                     \
	}

/* Fills cfg from the table, the environment and argv[1..argc). Flags are
 * `--name=value`, `--name value`, or `--name` for a bool. Unknown flags and
 * invalid values are errors, except that an alias (someone else's variable)
 * with a value that does not parse falls back to the default with a
 * warning, as Open WebUI does. Returns 0; 1 when --help was given (help is
 * printed to stdout); -1 with a message in err. `warn` receives warnings
 * and may be NULL. Strings stored in cfg are heap copies owned by cfg for
 * the life of the process. */
int config_load(const config_opt *tab, void *cfg, int argc, char **argv, char *err, size_t errlen,
                void (*warn)(const char *msg));

void config_help(const config_opt *tab, const char *usage, FILE *out);

/* Prints `name = value` lines (secrets masked) - the effective config. */
void config_dump(const config_opt *tab, const void *cfg, FILE *out);

#endif
