/*
 * admin.h - the internal port: /healthz, /readyz, /metrics (Prometheus
 * text). Never exposed to browsers.
 */
#ifndef TIDINGS_ADMIN_H
#define TIDINGS_ADMIN_H

#include "httpd.h"

void admin_route(conn *c, const http_request *req, slice body);

#endif
