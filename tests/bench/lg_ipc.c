#include "lg_ipc.h"

#include <errno.h>
#include <string.h>
#include <sys/uio.h>

int lg_ipc_send(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen,
                const void *c, size_t clen)
{
	lg_msg_hdr h = {type, (uint32_t)(alen + blen + clen)};
	struct iovec iov[4] = {
	    {&h, sizeof(h)},
	    {(void *)a, a ? alen : 0},
	    {(void *)b, b ? blen : 0},
	    {(void *)c, c ? clen : 0},
	};
	struct iovec *v = iov;
	int cnt = 4;
	while (cnt > 0) {
		ssize_t n = writev(fd, v, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		while (cnt > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
	return 0;
}

size_t lg_ipc_next(const buf *in, lg_msg_hdr *h, const char **body)
{
	if (in->len < sizeof(*h))
		return 0;
	memcpy(h, in->data, sizeof(*h));
	if (in->len - sizeof(*h) < h->len)
		return 0;
	*body = in->data + sizeof(*h);
	return sizeof(*h) + h->len;
}
