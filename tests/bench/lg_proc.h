/*
 * lg_proc.h - what the load generator measures of processes: the servers'
 * CPU time and resident memory from /proc, and its own CPU time.
 */
#ifndef TIDINGS_LG_PROC_H
#define TIDINGS_LG_PROC_H

/* User + system CPU seconds of process pid, all its threads included (the
 * kernel sums them into /proc/PID/stat); -1 when it cannot be read. */
double lg_proc_cpu_s(int pid);

/* VmRSS of process pid in kB; -1 when it cannot be read. */
long lg_proc_rss_kb(int pid);

/* User + system CPU seconds this process has used. */
double lg_self_cpu_s(void);

#endif
