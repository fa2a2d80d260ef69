// A Prometheus text endpoint (`--metrics-port`): one thread answers every
// HTTP request on ADDR:PORT with the latest text the trainer published.
// The trainer never waits on it beyond a mutex around one string copy.
#ifndef DISTILL_STUDENT_METRICS_HTTP_H
#define DISTILL_STUDENT_METRICS_HTTP_H

#include "common/err.h"

typedef struct dl_metrics_http dl_metrics_http;

// Binds addr:port (e.g. "127.0.0.1", 9100) and starts serving.
dl_metrics_http *dl_metrics_http_start(const char *addr, int port, dl_err *err);
// Replaces the exposition text (Prometheus text format 0.0.4).
void dl_metrics_http_publish(dl_metrics_http *h, const char *text);
void dl_metrics_http_stop(dl_metrics_http *h);

#endif
