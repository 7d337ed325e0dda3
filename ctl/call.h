/*
 * call.h - `tidingsctl call`: Open WebUI's event_call from the command
 * line, through a gateway's POST /api/v1/call (the call must wait for the
 * browser's answer, which only a gateway can receive).
 */
#ifndef TIDINGS_CTL_CALL_H
#define TIDINGS_CTL_CALL_H

int ctl_call(int argc, char **argv);

#endif
