/*
 * emit.h - `tidingsctl emit`: a producer emit from the command line,
 * written straight to the ingress stream (the raw XADD of docs/redis.md),
 * so it needs Redis and nothing else.
 */
#ifndef TIDINGS_CTL_EMIT_H
#define TIDINGS_CTL_EMIT_H

int ctl_emit(int argc, char **argv);

#endif
