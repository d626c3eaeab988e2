/*
 * http.c: HTTP/1.1 request parsing (llhttp), routing, pipelining and
 * response framing for infertap-sim, with no knowledge of sockets.
 *
 * Design: the connection accumulates the request line and headers in one
 * buffer ("url\0name\0value\0...", names lower-cased as they arrive) and the
 * body in the request, enforcing the 64 KiB header and 8 MiB body limits as
 * bytes arrive.  A complete request is queued and dispatched at once, so a
 * request without delays is answered before the parser looks at the next
 * one; pipelined answers stay in order because only the head request writes
 * to the connection's output.  Any parse error queues a 400 (or 413/431)
 * that closes the connection once everything before it has been written.
 */

#include "config.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <llhttp.h>

#include "http.h"
#include "job.h"

struct tap_sim_conn_s {
    tap_sim_worker_t        *w;
    llhttp_t                 parser;
    struct evbuffer         *out;
    tap_sim_conn_event_cb    on_event;
    void                    *arg;
    tap_sim_req_t           *head;
    tap_sim_req_t           *tail;
    unsigned                 nreq;
    tap_sim_req_t           *cur;
    char                    *hbuf;
    size_t                   hlen;
    size_t                   hcap;
    size_t                   hbytes;
    unsigned                 nhdr;
    int                      perr;
    unsigned                 read_done:1;
    unsigned                 closing:1;
};

static int tap_sim_on_message_begin(llhttp_t *p);
static int tap_sim_on_url(llhttp_t *p, const char *at, size_t len);
static int tap_sim_on_header_field(llhttp_t *p, const char *at, size_t len);
static int tap_sim_on_header_value(llhttp_t *p, const char *at, size_t len);
static int tap_sim_on_headers_complete(llhttp_t *p);
static int tap_sim_on_body(llhttp_t *p, const char *at, size_t len);
static int tap_sim_on_message_complete(llhttp_t *p);
static int tap_sim_on_span_end(llhttp_t *p);
static int tap_sim_on_value_end(llhttp_t *p);

static const llhttp_settings_t  tap_sim_settings = {
    .on_message_begin = tap_sim_on_message_begin,
    .on_url = tap_sim_on_url,
    .on_header_field = tap_sim_on_header_field,
    .on_header_value = tap_sim_on_header_value,
    .on_headers_complete = tap_sim_on_headers_complete,
    .on_body = tap_sim_on_body,
    .on_message_complete = tap_sim_on_message_complete,
    .on_url_complete = tap_sim_on_span_end,
    .on_header_field_complete = tap_sim_on_span_end,
    .on_header_value_complete = tap_sim_on_value_end,
};


static tap_sim_req_t *
tap_sim_req_create(tap_sim_conn_t *c)
{
    tap_sim_req_t  *r;

    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        abort();
    }

    r->conn = c;
    r->w = c->w;
    return r;
}


static void
tap_sim_req_destroy(tap_sim_req_t *r)
{
    if (r == NULL) {
        return;
    }

    tap_sim_job_release(r);
    if (r->out != NULL) {
        evbuffer_free(r->out);
    }
    free(r->body);
    free(r->request_id);
    free(r);
}


tap_sim_conn_t *
tap_sim_conn_create(tap_sim_worker_t *w, struct evbuffer *out, tap_sim_conn_event_cb on_event,
    void *arg)
{
    tap_sim_conn_t  *c;

    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }

    c->w = w;
    c->out = out;
    c->on_event = on_event;
    c->arg = arg;
    llhttp_init(&c->parser, HTTP_REQUEST, &tap_sim_settings);
    c->parser.data = c;
    return c;
}


static void
tap_sim_conn_drop_all(tap_sim_conn_t *c)
{
    tap_sim_req_t  *r;

    while ((r = c->head) != NULL) {
        c->head = r->next;
        tap_sim_req_destroy(r);
    }
    c->tail = NULL;
    c->nreq = 0;
}


void
tap_sim_conn_destroy(tap_sim_conn_t *c)
{
    if (c == NULL) {
        return;
    }

    tap_sim_conn_drop_all(c);
    tap_sim_req_destroy(c->cur);
    free(c->hbuf);
    free(c);
}


int
tap_sim_conn_wants_close(const tap_sim_conn_t *c)
{
    return c->closing;
}


int
tap_sim_conn_busy(const tap_sim_conn_t *c)
{
    return c->head != NULL;
}


unsigned
tap_sim_conn_pending(const tap_sim_conn_t *c)
{
    return c->nreq;
}


void
tap_sim_conn_notify(tap_sim_conn_t *c)
{
    if (c->on_event != NULL) {
        c->on_event(c, c->arg);
    }
}


/* Pop finished requests off the head, moving the next one's buffered output. */
static void
tap_sim_conn_advance(tap_sim_conn_t *c)
{
    tap_sim_req_t  *r;
    unsigned        close;

    while ((r = c->head) != NULL && r->done) {
        c->head = r->next;
        if (c->head == NULL) {
            c->tail = NULL;
        }
        c->nreq--;
        close = r->close_after;
        tap_sim_req_destroy(r);

        if (close) {
            c->closing = 1;
            c->read_done = 1;
            tap_sim_conn_drop_all(c);
            break;
        }

        if (c->head != NULL && c->head->out != NULL) {
            evbuffer_add_buffer(c->out, c->head->out);
            evbuffer_free(c->head->out);
            c->head->out = NULL;
        }
    }
}


static void
tap_sim_conn_enqueue(tap_sim_conn_t *c, tap_sim_req_t *r)
{
    r->next = NULL;
    if (c->tail != NULL) {
        c->tail->next = r;
    } else {
        c->head = r;
    }
    c->tail = r;
    c->nreq++;
}


static void
tap_sim_hbuf_add(tap_sim_conn_t *c, const char *at, size_t len, int lower)
{
    size_t  cap, i;
    char   *p;

    if (c->hlen + len + 1 > c->hcap) {
        cap = c->hcap ? c->hcap : 1024;
        while (cap < c->hlen + len + 1) {
            cap *= 2;
        }
        p = realloc(c->hbuf, cap);
        if (p == NULL) {
            abort();
        }
        c->hbuf = p;
        c->hcap = cap;
    }

    if (lower) {
        for (i = 0; i < len; i++) {
            c->hbuf[c->hlen + i] = (char) tolower((unsigned char) at[i]);
        }
    } else if (len > 0) {
        memcpy(c->hbuf + c->hlen, at, len);
    }
    c->hlen += len;
}


static int
tap_sim_head_bytes(tap_sim_conn_t *c, size_t len)
{
    c->hbytes += len;
    if (c->hbytes > TAP_SIM_MAX_HEADER) {
        c->perr = 431;
        return -1;
    }
    return 0;
}


static int
tap_sim_on_message_begin(llhttp_t *p)
{
    tap_sim_conn_t  *c = p->data;

    tap_sim_req_destroy(c->cur);
    c->cur = tap_sim_req_create(c);
    c->hlen = 0;
    c->hbytes = 0;
    c->nhdr = 0;
    return 0;
}


static int
tap_sim_on_url(llhttp_t *p, const char *at, size_t len)
{
    tap_sim_conn_t  *c = p->data;

    if (tap_sim_head_bytes(c, len) != 0) {
        return -1;
    }
    tap_sim_hbuf_add(c, at, len, 0);
    return 0;
}


static int
tap_sim_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    tap_sim_conn_t  *c = p->data;

    if (tap_sim_head_bytes(c, len) != 0) {
        return -1;
    }
    tap_sim_hbuf_add(c, at, len, 1);
    return 0;
}


static int
tap_sim_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    tap_sim_conn_t  *c = p->data;

    if (tap_sim_head_bytes(c, len) != 0) {
        return -1;
    }
    tap_sim_hbuf_add(c, at, len, 0);
    return 0;
}


/* End of the URL, a header name or a header value: terminate the string. */
static int
tap_sim_on_span_end(llhttp_t *p)
{
    tap_sim_conn_t  *c = p->data;

    if (tap_sim_head_bytes(c, 2) != 0) {
        return -1;
    }
    tap_sim_hbuf_add(c, "", 1, 0);
    return 0;
}


static int
tap_sim_on_value_end(llhttp_t *p)
{
    tap_sim_conn_t  *c = p->data;

    c->nhdr++;
    return tap_sim_on_span_end(p);
}


static int
tap_sim_path_is(const char *p, size_t len, const char *s)
{
    size_t  n = strlen(s);

    return len == n && memcmp(p, s, n) == 0;
}


static int
tap_sim_path_prefix(const char *p, size_t len, const char *s)
{
    size_t  n = strlen(s);

    return len >= n && memcmp(p, s, n) == 0;
}


/* Route by method and path; r->allow names the method a 405 should offer. */
static void
tap_sim_route(tap_sim_req_t *r, const char *path, size_t len)
{
    static const struct {
        const char         *path;
        int                 post;
        tap_sim_route_e     route;
    } tap_sim_routes[] = {
        { "/v1/chat/completions", 1, TAP_SIM_R_CHAT },
        { "/v1/completions", 1, TAP_SIM_R_COMPLETIONS },
        { "/v1/embeddings", 1, TAP_SIM_R_EMBEDDINGS },
        { "/v1/models", 0, TAP_SIM_R_MODELS },
        { "/health", 0, TAP_SIM_R_HEALTH },
        { "/metrics", 0, TAP_SIM_R_METRICS },
        { "/sim/stats", 0, TAP_SIM_R_STATS },
        { "/sim/requests", 0, TAP_SIM_R_REQUESTS },
        { "/sim/generations", 0, TAP_SIM_R_GENERATIONS },
        { "/api/chat", 1, TAP_SIM_R_OLLAMA_CHAT },
        { "/api/generate", 1, TAP_SIM_R_OLLAMA_GENERATE },
        { "/generate", 1, TAP_SIM_R_TGI },
        { "/generate_stream", 1, TAP_SIM_R_TGI_STREAM },
        { "/completion", 1, TAP_SIM_R_LLAMA },
        { "/v2/health/ready", 0, TAP_SIM_R_KSERVE_READY },
        { "/v2/health/live", 0, TAP_SIM_R_KSERVE_READY },
    };
    tap_sim_route_e  route;
    const char      *rest;
    size_t           i, rlen;
    int              post;

    route = TAP_SIM_R_NOT_FOUND;
    post = 0;
    for (i = 0; i < TAP_NELEMS(tap_sim_routes); i++) {
        if (tap_sim_path_is(path, len, tap_sim_routes[i].path)) {
            route = tap_sim_routes[i].route;
            post = tap_sim_routes[i].post;
            break;
        }
    }

    if (route == TAP_SIM_R_NOT_FOUND && tap_sim_path_prefix(path, len, "/v2/models/")) {
        rest = path + 11;
        rlen = len - 11;
        for (i = 0; i < rlen && rest[i] != '/'; i++) {
            /* model name */
        }
        if (i > 0 && tap_sim_path_is(rest + i, rlen - i, "/infer")) {
            route = TAP_SIM_R_KSERVE_INFER;
            post = 1;

        } else if (i > 0 && (tap_sim_path_is(rest + i, rlen - i, "/ready")
                             || rlen == i))
        {
            route = TAP_SIM_R_KSERVE_READY;
        }
    }

    if (route != TAP_SIM_R_NOT_FOUND
        && r->method != (post ? HTTP_POST : HTTP_GET)
        && !(r->method == HTTP_HEAD && !post))
    {
        r->allow = post ? "POST" : "GET";
        route = TAP_SIM_R_BAD_METHOD;
    }

    r->route = route;
}


static int
tap_sim_on_headers_complete(llhttp_t *p)
{
    tap_sim_conn_t  *c = p->data;
    tap_sim_req_t   *r = c->cur;
    const char      *url, *q, *name, *value, *end;
    size_t           plen, n;
    unsigned         i;

    if (c->hlen == 0 || c->hbuf[c->hlen - 1] != '\0') {
        /* llhttp always ends URL and values first; stay safe if it did not */
        tap_sim_hbuf_add(c, "", 1, 0);
    }

    r->method = llhttp_get_method(p);
    url = c->hbuf;
    q = memchr(url, '?', strlen(url));
    plen = q != NULL ? (size_t) (q - url) : strlen(url);
    n = TAP_MIN(plen, sizeof(r->log_path) - 1);
    memcpy(r->log_path, url, n);
    r->log_path[n] = '\0';
    tap_sim_route(r, url, plen);

    if (!tap_sim_path_prefix(url, plen, "/sim/")) {
        tap_sim_shared_record_head(c->w->shared, llhttp_method_name(r->method), c->hbuf,
                                   c->hlen, c->nhdr);
    }

    name = c->hbuf + strlen(url) + 1;
    end = c->hbuf + c->hlen;
    for (i = 0; i < c->nhdr && name < end; i++) {
        value = name + strlen(name) + 1;
        if (value >= end) {
            break;
        }
        if (strcmp(name, "expect") == 0 && strcasecmp(value, "100-continue") == 0) {
            r->expect = 1;

        } else if (strcmp(name, "x-request-id") == 0 && r->request_id == NULL) {
            r->request_id_len = strlen(value);
            r->request_id = strndup(value, r->request_id_len);
            if (r->request_id == NULL) {
                abort();
            }
        }
        name = value + strlen(value) + 1;
    }

    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > TAP_SIM_MAX_BODY) {
        c->perr = 413;
        return -1;
    }

    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
        r->body = malloc((size_t) p->content_length + 1);
        if (r->body == NULL) {
            abort();
        }
        r->body_cap = (size_t) p->content_length + 1;
    }

    if (r->expect && c->head == NULL) {
        evbuffer_add(c->out, "HTTP/1.1 100 Continue\r\n\r\n", 25);
    }

    return 0;
}


static int
tap_sim_on_body(llhttp_t *p, const char *at, size_t len)
{
    tap_sim_conn_t  *c = p->data;
    tap_sim_req_t   *r = c->cur;
    size_t           cap;
    char            *b;

    if (r->body_len + len > TAP_SIM_MAX_BODY) {
        c->perr = 413;
        return -1;
    }

    if (r->body_len + len + 1 > r->body_cap) {
        cap = r->body_cap ? r->body_cap : 1024;
        while (cap < r->body_len + len + 1) {
            cap *= 2;
        }
        b = realloc(r->body, cap);
        if (b == NULL) {
            abort();
        }
        r->body = b;
        r->body_cap = cap;
    }

    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}


static void
tap_sim_conn_dispatch(tap_sim_conn_t *c, tap_sim_req_t *r)
{
    r->path = r->log_path;
    r->path_len = strlen(r->log_path);

    switch (r->route) {
    case TAP_SIM_R_HEALTH:
    case TAP_SIM_R_KSERVE_READY:
        tap_sim_req_reply(r, 200, NULL, "", 0, NULL);
        break;
    case TAP_SIM_R_MODELS:
        tap_sim_openai_models(r);
        return;
    case TAP_SIM_R_METRICS:
        tap_sim_metrics_reply(r);
        break;
    case TAP_SIM_R_STATS:
        tap_sim_stats_reply(r);
        break;
    case TAP_SIM_R_REQUESTS:
        tap_sim_requests_reply(r);
        break;
    case TAP_SIM_R_GENERATIONS:
        tap_sim_generations_reply(r);
        break;
    case TAP_SIM_R_CHAT:
        tap_sim_openai_chat(r);
        return;
    case TAP_SIM_R_COMPLETIONS:
        tap_sim_openai_completions(r);
        return;
    case TAP_SIM_R_EMBEDDINGS:
        tap_sim_openai_embeddings(r);
        return;
    case TAP_SIM_R_OLLAMA_CHAT:
        tap_sim_ollama_chat(r);
        return;
    case TAP_SIM_R_OLLAMA_GENERATE:
        tap_sim_ollama_generate(r);
        return;
    case TAP_SIM_R_TGI:
        tap_sim_tgi_generate(r, 0);
        return;
    case TAP_SIM_R_TGI_STREAM:
        tap_sim_tgi_generate(r, 1);
        return;
    case TAP_SIM_R_LLAMA:
        tap_sim_llama_completion(r);
        return;
    case TAP_SIM_R_KSERVE_INFER:
        tap_sim_kserve_infer(r);
        return;
    case TAP_SIM_R_BAD_METHOD:
        tap_sim_req_error(r, 405, "method not allowed");
        break;
    default:
        tap_sim_req_error(r, 404, "not found");
        break;
    }

    tap_sim_req_finish(r);
}


static int
tap_sim_on_message_complete(llhttp_t *p)
{
    tap_sim_conn_t  *c = p->data;
    tap_sim_req_t   *r = c->cur;

    c->cur = NULL;
    if (!llhttp_should_keep_alive(p)) {
        r->close_after = 1;
        c->read_done = 1;
    }

    tap_sim_conn_enqueue(c, r);
    tap_sim_conn_dispatch(c, r);

    return c->read_done ? HPE_PAUSED : 0;
}


void
tap_sim_conn_feed(tap_sim_conn_t *c, const char *data, size_t len)
{
    tap_sim_req_t  *r;
    llhttp_errno_t  err;
    char            msg[160];
    int             status;

    if (c->read_done || len == 0) {
        return;
    }

    err = llhttp_execute(&c->parser, data, len);
    if (err == HPE_OK || err == HPE_PAUSED) {
        return;
    }

    c->read_done = 1;
    if (err == HPE_PAUSED_UPGRADE || err == HPE_PAUSED_H2_UPGRADE) {
        if (c->tail != NULL) {
            c->tail->close_after = 1;
        } else {
            c->closing = 1;
        }
        return;
    }

    status = c->perr ? c->perr : 400;
    tap_sim_req_destroy(c->cur);
    c->cur = NULL;

    r = tap_sim_req_create(c);
    strcpy(r->log_path, "-");
    r->close_after = 1;
    tap_sim_conn_enqueue(c, r);
    if (status == 413) {
        snprintf(msg, sizeof(msg), "request body larger than %u bytes", TAP_SIM_MAX_BODY);
    } else if (status == 431) {
        snprintf(msg, sizeof(msg), "request header larger than %u bytes", TAP_SIM_MAX_HEADER);
    } else {
        snprintf(msg, sizeof(msg), "malformed HTTP request: %s",
                 llhttp_get_error_reason(&c->parser) ? llhttp_get_error_reason(&c->parser)
                                                     : llhttp_errno_name(err));
    }
    tap_sim_req_error(r, status, msg);
    tap_sim_req_finish(r);
}


struct evbuffer *
tap_sim_req_out(tap_sim_req_t *r)
{
    if (r->conn->head == r) {
        return r->conn->out;
    }

    if (r->out == NULL) {
        r->out = evbuffer_new();
        if (r->out == NULL) {
            abort();
        }
    }
    return r->out;
}


static const char *
tap_sim_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 413: return "Content Too Large";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    default: return "Unknown";
    }
}


void
tap_sim_req_reply(tap_sim_req_t *r, int status, const char *ctype, const char *body, size_t len,
    const char *extra)
{
    struct evbuffer  *out;
    char              head[512];
    int               n;

    out = tap_sim_req_out(r);
    n = snprintf(head, sizeof(head),
                 "HTTP/1.1 %d %s\r\nserver: infertap-sim\r\n%s%s%scontent-length: %zu\r\n%s%s\r\n",
                 status, tap_sim_reason(status), ctype ? "content-type: " : "",
                 ctype ? ctype : "", ctype ? "\r\n" : "", len, extra ? extra : "",
                 r->close_after ? "connection: close\r\n" : "");
    if (n > 0) {
        evbuffer_add(out, head, TAP_MIN((size_t) n, sizeof(head) - 1));
    }
    if (r->method != HTTP_HEAD && len > 0) {
        evbuffer_add(out, body, len);
    }
    r->status = status;
}


void
tap_sim_req_json(tap_sim_req_t *r, int status, const tap_sim_sb_t *sb)
{
    tap_sim_req_reply(r, status, "application/json", sb->p, sb->len, NULL);
}


/*
 * Errors: request problems (400, 413, 431) in vLLM's flat shape, the others
 * (404, 405, 429, 500) in OpenAI's {"error":{...}} shape.
 */
void
tap_sim_req_error(tap_sim_req_t *r, int status, const char *msg)
{
    tap_sim_sb_t  *sb = &r->w->sb2;
    const char    *type, *extra;
    char           allow[64];

    switch (status) {
    case 404: type = "NotFoundError"; break;
    case 405: type = "MethodNotAllowed"; break;
    case 413: type = "RequestEntityTooLarge"; break;
    case 429: type = "RateLimitError"; break;
    case 431: type = "RequestHeaderFieldsTooLarge"; break;
    case 500: type = "InternalServerError"; break;
    default: type = "BadRequestError"; break;
    }

    tap_sim_sb_reset(sb);
    if (status == 400 || status == 413 || status == 431) {
        tap_sim_sb_adds(sb, "{\"object\":\"error\",\"message\":");
        tap_sim_sb_add_jstr(sb, msg, strlen(msg));
        tap_sim_sb_addf(sb, ",\"type\":\"%s\",\"param\":null,\"code\":%d}", type, status);

    } else {
        tap_sim_sb_adds(sb, "{\"error\":{\"message\":");
        tap_sim_sb_add_jstr(sb, msg, strlen(msg));
        tap_sim_sb_addf(sb, ",\"type\":\"%s\",\"param\":null,\"code\":%d}}", type, status);
    }

    extra = NULL;
    if (status == 429) {
        extra = "retry-after: 1\r\n";
    } else if (status == 405 && r->allow != NULL) {
        snprintf(allow, sizeof(allow), "allow: %s\r\n", r->allow);
        extra = allow;
    }
    tap_sim_req_reply(r, status, "application/json", sb->p, sb->len, extra);
}


void
tap_sim_req_stream_begin(tap_sim_req_t *r, const char *ctype)
{
    evbuffer_add_printf(tap_sim_req_out(r),
                        "HTTP/1.1 200 OK\r\nserver: infertap-sim\r\ncontent-type: %s\r\n"
                        "cache-control: no-cache\r\ntransfer-encoding: chunked\r\n%s\r\n",
                        ctype, r->close_after ? "connection: close\r\n" : "");
    r->status = 200;
}


void
tap_sim_req_stream_chunk(tap_sim_req_t *r, const char *data, size_t len)
{
    struct evbuffer  *out;
    char              head[24];
    int               n;

    if (len == 0) {
        return;
    }

    out = tap_sim_req_out(r);
    n = snprintf(head, sizeof(head), "%zx\r\n", len);
    evbuffer_add(out, head, (size_t) n);
    evbuffer_add(out, data, len);
    evbuffer_add(out, "\r\n", 2);
}


void
tap_sim_req_stream_end(tap_sim_req_t *r)
{
    evbuffer_add(tap_sim_req_out(r), "0\r\n\r\n", 5);
}


void
tap_sim_req_finish(tap_sim_req_t *r)
{
    tap_sim_conn_t  *c = r->conn;

    r->done = 1;
    if (!r->w->shared->conf->quiet) {
        fprintf(stderr, "%s %s %d %u\n",
                r->route == TAP_SIM_R_NONE ? "-" : llhttp_method_name(r->method), r->log_path,
                r->status, r->tokens);
    }
    tap_sim_conn_advance(c);
}


/* Finish r and close the connection right after its (partial) output. */
void
tap_sim_req_cut(tap_sim_req_t *r)
{
    r->close_after = 1;
    tap_sim_req_finish(r);
}
