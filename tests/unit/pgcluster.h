/*
 * pgcluster.h - a private PostgreSQL cluster for unit tests that need a
 * real database (common/pg, worker/persist). PostgreSQL refuses to run as
 * root, so a small reaper process starts initdb and the postmaster as the
 * `postgres` user and stops the postmaster by PID, and removes its
 * directory, as soon as the test process's end of a pipe closes - on a
 * normal exit, a failed assertion or a sanitizer abort alike.
 *
 * cluster_start() returns 1 started (conninfo, port, pm_pid set), 0 when
 * it cannot run here (not root, no postgres user or binaries: the test
 * skips), -1 when it failed. cluster_stop() ends it.
 */
#ifndef TIDINGS_PGCLUSTER_H
#define TIDINGS_PGCLUSTER_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PGBIN "/usr/lib/postgresql/15/bin"

static char dir[64], datadir[96], conninfo[256];
static int port;
static pid_t pm_pid = -1, reaper = -1;
static int live_fd = -1;
static uid_t pg_uid;
static gid_t pg_gid;

static int free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0), p = -1;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
		p = ntohs(sa.sin_port);
	if (fd >= 0)
		close(fd);
	return p;
}

/* Forks and execs argv as the postgres user, output appended to a log. */
static pid_t spawn_as_postgres(char *const argv[])
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	char log[128];
	snprintf(log, sizeof(log), "%s/server.log", dir);
	int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd >= 0) {
		dup2(fd, 1);
		dup2(fd, 2);
	}
	if (setgroups(0, NULL) < 0 || setgid(pg_gid) < 0 || setuid(pg_uid) < 0)
		_exit(126);
	execv(argv[0], argv);
	_exit(127);
}

/* The PIDs whose parent is ppid, from /proc. */
static int children_of(pid_t ppid, pid_t *out, int max)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;
	while (d && (e = readdir(d)) && n < max) {
		char path[288], buf[512];
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		char *p = strrchr(buf, ')'); /* the command name may hold spaces */
		char state;
		int parent;
		if (p && sscanf(p + 1, " %c %d", &state, &parent) == 2 && parent == ppid)
			out[n++] = atoi(e->d_name);
	}
	if (d)
		closedir(d);
	return n;
}

/* Signals the postmaster and each of its children, by PID. */
static void signal_cluster(pid_t pm, int sig)
{
	pid_t kids[64];
	int n = children_of(pm, kids, 64);
	if (sig == SIGSTOP)
		kill(pm, sig); /* first, so that it forks no one meanwhile */
	for (int i = 0; i < n; i++)
		kill(kids[i], sig);
	if (sig != SIGSTOP)
		kill(pm, sig);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	remove(path);
	return 0;
}

/* Immediate shutdown, then SIGKILL if it lingers; the reaper is its parent. */
static void stop_cluster(pid_t pm)
{
	signal_cluster(pm, SIGCONT);
	kill(pm, SIGQUIT);
	for (int i = 0; i < 200; i++) {
		if (waitpid(pm, NULL, WNOHANG) == pm)
			return;
		usleep(50000);
	}
	signal_cluster(pm, SIGKILL);
	waitpid(pm, NULL, 0);
}

static void reaper_main(int live, int info)
{
	signal(SIGINT, SIG_IGN); /* a ^C to the test still ends it through the pipe */
	signal(SIGTERM, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	char portstr[16];
	snprintf(portstr, sizeof(portstr), "%d", port);
	static char initdb_bin[] = PGBIN "/initdb", postgres_bin[] = PGBIN "/postgres";
	char *initdb[] = {initdb_bin, "-D", datadir, "-A",   "trust", "-U",
	                  "postgres", "-N", "-E",    "UTF8", NULL};
	char *postgres[] = {postgres_bin, "-D",        datadir,
	                    "-p",         portstr,     "-k",
	                    dir,          "-c",        "listen_addresses=127.0.0.1",
	                    "-c",         "fsync=off", NULL};
	pid_t pm = -1, init = spawn_as_postgres(initdb);
	int status = -1;
	if (init > 0 && waitpid(init, &status, 0) == init && WIFEXITED(status) &&
	    WEXITSTATUS(status) == 0)
		pm = spawn_as_postgres(postgres);
	ssize_t w = write(info, &pm, sizeof(pm)); /* a short write reads as failure */
	(void)w;
	close(info);
	for (;;) { /* until the test process's end closes */
		char c;
		ssize_t n = read(live, &c, 1);
		if (n == 0 || (n < 0 && errno != EINTR))
			break;
	}
	if (pm > 0)
		stop_cluster(pm);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	_exit(0); /* not exit(): the leak checker belongs to the test process */
}

/* 1 started, 0 cannot run here (skip), -1 failed. */
static int cluster_start(void)
{
	struct passwd *pw = getpwnam("postgres");
	if (geteuid() != 0 || !pw || access(PGBIN "/postgres", X_OK) != 0)
		return 0;
	pg_uid = pw->pw_uid;
	pg_gid = pw->pw_gid;
	snprintf(dir, sizeof(dir), "/tmp/tidings-pg-XXXXXX");
	if (!mkdtemp(dir) || chown(dir, pg_uid, pg_gid) < 0)
		return -1;
	snprintf(datadir, sizeof(datadir), "%s/data", dir);
	port = free_port();
	snprintf(conninfo, sizeof(conninfo), "host=127.0.0.1 port=%d user=postgres dbname=postgres",
	         port);
	int live[2], info[2];
	if (pipe2(live, O_CLOEXEC) < 0 || pipe2(info, O_CLOEXEC) < 0)
		return -1;
	fflush(stdout);
	reaper = fork();
	if (reaper < 0)
		return -1;
	if (reaper == 0) {
		close(live[1]);
		close(info[0]);
		reaper_main(live[0], info[1]);
	}
	close(live[0]);
	close(info[1]);
	live_fd = live[1];
	if (read(info[0], &pm_pid, sizeof(pm_pid)) != sizeof(pm_pid))
		pm_pid = -1;
	close(info[0]);
	if (pm_pid <= 0)
		return -1;
	/* Blocking PQping is fine here: this is setup, not the module. */
	for (int i = 0; i < 600; i++) {
		if (PQping(conninfo) == PQPING_OK)
			return 1;
		usleep(50000);
	}
	return -1;
}

static void cluster_stop(void)
{
	if (live_fd >= 0)
		close(live_fd);
	live_fd = -1;
	if (reaper > 0)
		waitpid(reaper, NULL, 0);
	reaper = -1;
}

#endif
