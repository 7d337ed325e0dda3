#include "lg_proc.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Reads a small /proc file into out (NUL-terminated); bytes read or -1. */
static ssize_t read_proc(int pid, const char *name, char *out, size_t cap)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/%s", pid, name);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0)
		return -1;
	out[n] = '\0';
	return n;
}

double lg_proc_cpu_s(int pid)
{
	char b[1024];
	if (read_proc(pid, "stat", b, sizeof(b)) < 0)
		return -1;
	/* The command name in field 2 may hold spaces and parentheses; the
	 * fields after the last ')' are fixed: state is field 3, utime 14 and
	 * stime 15. */
	char *p = strrchr(b, ')');
	if (!p)
		return -1;
	unsigned long long ut = 0, st = 0;
	if (sscanf(p + 1, " %*c %*s %*s %*s %*s %*s %*s %*s %*s %*s %*s %llu %llu", &ut, &st) != 2)
		return -1;
	long hz = sysconf(_SC_CLK_TCK);
	return (double)(ut + st) / (double)(hz > 0 ? hz : 100);
}

long lg_proc_rss_kb(int pid)
{
	char b[4096];
	if (read_proc(pid, "status", b, sizeof(b)) < 0)
		return -1;
	const char *p = strstr(b, "\nVmRSS:");
	return p ? strtol(p + 7, NULL, 10) : -1;
}

double lg_self_cpu_s(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}
