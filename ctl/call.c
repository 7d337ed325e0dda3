#include "ctl/call.h"

#include <arpa/inet.h>
#include <cJSON.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static int usage(void)
{
	fprintf(stderr, "usage: tidingsctl call --sid SID [--event events] [--data JSON]\n"
	                "                       [--timeout-ms N] [--user USER_ID]\n"
	                "Posts to the gateway's internal port (TIDINGS_ADMIN_LISTEN, default\n"
	                "127.0.0.1:8091) with TIDINGS_API_KEY; prints the client's answer.\n");
	return 2;
}

int ctl_call(int argc, char **argv)
{
	const char *sid = NULL, *event = "events", *data = "null", *user = NULL;
	long timeout = 0;
	for (int i = 1; i < argc && argv[i]; i++) {
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(argv[i], "--sid") && v)
			sid = v, i++;
		else if (!strcmp(argv[i], "--event") && v)
			event = v, i++;
		else if (!strcmp(argv[i], "--data") && v)
			data = v, i++;
		else if (!strcmp(argv[i], "--user") && v)
			user = v, i++;
		else if (!strcmp(argv[i], "--timeout-ms") && v)
			timeout = atol(v), i++;
		else
			return usage();
	}
	const char *key = getenv("TIDINGS_API_KEY");
	const char *addr = getenv("TIDINGS_ADMIN_LISTEN");
	if (!addr || !*addr)
		addr = "127.0.0.1:8091";
	if (!sid || !key || !*key)
		return usage();
	cJSON *body = cJSON_CreateObject();
	cJSON *d = cJSON_Parse(data);
	if (!d) {
		fprintf(stderr, "tidingsctl call: --data is not JSON\n");
		return 2;
	}
	cJSON_AddStringToObject(body, "sid", sid);
	cJSON_AddStringToObject(body, "event", event);
	cJSON_AddItemToObject(body, "data", d);
	if (timeout > 0)
		cJSON_AddNumberToObject(body, "timeout_ms", (double)timeout);
	if (user)
		cJSON_AddStringToObject(body, "user_id", user);
	char *json = cJSON_PrintUnformatted(body);
	cJSON_Delete(body);

	char host[64];
	const char *colon = strrchr(addr, ':');
	if (!colon || (size_t)(colon - addr) >= sizeof(host))
		return usage();
	memcpy(host, addr, (size_t)(colon - addr));
	host[colon - addr] = '\0';
	struct sockaddr_in sa = {.sin_family = AF_INET,
	                         .sin_port = htons((uint16_t)atoi(colon + 1))};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1 ||
	    connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "tidingsctl call: cannot reach %s\n", addr);
		free(json);
		return 1;
	}
	char head[512];
	int n = snprintf(head, sizeof(head),
	                 "POST /api/v1/call HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"
	                 "Content-Type: application/json\r\nContent-Length: %zu\r\n"
	                 "Connection: close\r\n\r\n",
	                 addr, key, strlen(json));
	int ok = write(fd, head, (size_t)n) == n &&
	         write(fd, json, strlen(json)) == (ssize_t)strlen(json);
	free(json);
	char resp[1 << 16];
	size_t got = 0;
	ssize_t r;
	while (ok && got < sizeof(resp) - 1 &&
	       (r = read(fd, resp + got, sizeof(resp) - 1 - got)) > 0)
		got += (size_t)r;
	close(fd);
	resp[got] = '\0';
	const char *bodyp = strstr(resp, "\r\n\r\n");
	if (!ok || !bodyp) {
		fprintf(stderr, "tidingsctl call: no answer from %s\n", addr);
		return 1;
	}
	int status = atoi(resp + 9);
	printf("%s\n", bodyp + 4);
	return status == 200 ? 0 : 1;
}
