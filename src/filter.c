/*
 * filter.c: the filter chain.
 *
 * Per exchange: pick the route by path prefix, let the protocol filters
 * claim the request, hand them the request body once it is complete, split
 * the response into events (SSE, NDJSON, or one JSON body) and hand them each
 * event, then finish the record.  The chain keeps bounded copies only: a
 * request body up to fc->capture, one pending event, one plain response body
 * up to fc->capture.
 *
 * Removing the usage event (fx->strip): the proxy then forwards nothing
 * itself and the chain hands it every byte through out(), event by event,
 * except the bytes of a dropped event.  Bytes of an unfinished event wait in
 * fx->hold until their event is complete; if they outgrow the capture limit
 * the chain stops dropping and forwards everything as it comes.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "filter.h"

#define TAP_FX_NAME_MAX  64


static void tap_fx_event(tap_fx_t *fx, const char *data, size_t len, const char *name,
    int whole, int *drop);
static int tap_fx_on_sse(void *ctx, const tap_sse_event_t *ev);
static int tap_fx_on_line(void *ctx, const tap_ndjson_line_t *line);


static int64_t
tap_fx_now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/* --- configuration -------------------------------------------------------------------------- */


const tap_filter_t *
tap_filter_find(const char *name)
{
    size_t  i;

    for (i = 0; tap_filters[i] != NULL; i++) {
        if (strcmp(tap_filters[i]->name, name) == 0) {
            return tap_filters[i];
        }
    }
    return NULL;
}


/* An error message: the concatenation of up to four strings (NULL ends). */
static char *
tap_fx_msg(const char *a, const char *b, const char *c, const char *d)
{
    const char  *part[4] = { a, b, c, d };
    size_t       n = 0, i, l;
    char        *s;

    for (i = 0; i < 4 && part[i] != NULL; i++) {
        n += strlen(part[i]);
    }
    s = malloc(n + 1);
    if (s == NULL) {
        return NULL;
    }
    n = 0;
    for (i = 0; i < 4 && part[i] != NULL; i++) {
        l = strlen(part[i]);
        memcpy(s + n, part[i], l);
        n += l;
    }
    s[n] = '\0';
    return s;
}


/* Trims blanks from both ends of [*s, *e). */
static void
tap_fx_trim(const char **s, const char **e)
{
    while (*s < *e && (**s == ' ' || **s == '\t')) {
        (*s)++;
    }
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) {
        (*e)--;
    }
}


/* Splits "LEFT = RIGHT" into two malloc'd trimmed strings. */
static int
tap_fx_split_pair(const char *entry, char **left, char **right)
{
    const char  *eq, *s, *e;

    eq = strchr(entry, '=');
    if (eq == NULL) {
        return TAP_ERROR;
    }
    s = entry;
    e = eq;
    tap_fx_trim(&s, &e);
    *left = strndup(s, (size_t) (e - s));
    s = eq + 1;
    e = entry + strlen(entry);
    tap_fx_trim(&s, &e);
    *right = strndup(s, (size_t) (e - s));
    if (*left == NULL || *right == NULL) {
        free(*left);
        free(*right);
        return TAP_ERROR;
    }
    return TAP_OK;
}


/* n rounded up to the alignment of any state */
static size_t
tap_fx_round(size_t n)
{
    return (n + _Alignof(max_align_t) - 1) & ~(_Alignof(max_align_t) - 1);
}


/* Fills r from a comma-separated list of names. */
static int
tap_fx_route_filters(tap_froute_t *r, const char *list, char **err)
{
    const char  *p = list, *s, *e;
    char         name[TAP_FX_NAME_MAX];
    const tap_filter_t  *f;
    unsigned     i;

    while (*p != '\0') {
        s = p;
        e = strchr(p, ',');
        if (e == NULL) {
            e = p + strlen(p);
        }
        p = *e == ',' ? e + 1 : e;
        tap_fx_trim(&s, &e);
        if (s == e) {
            continue;
        }
        if ((size_t) (e - s) >= sizeof(name)) {
            *err = tap_fx_msg("unknown filter '", list, "'", NULL);
            return TAP_ERROR;
        }
        memcpy(name, s, (size_t) (e - s));
        name[e - s] = '\0';
        f = tap_filter_find(name);
        if (f == NULL) {
            *err = tap_fx_msg("unknown filter '", name, "'", NULL);
            return TAP_ERROR;
        }
        for (i = 0; i < r->n; i++) {
            if (r->filters[i] == f) {
                *err = tap_fx_msg("filter '", name, "' listed twice", NULL);
                return TAP_ERROR;
            }
        }
        if (r->n == TAP_FILTER_MAX) {
            *err = tap_fx_msg("too many filters in '", list, "'", NULL);
            return TAP_ERROR;
        }
        r->filters[r->n++] = f;
        r->state_size += tap_fx_round(f->state_size);
    }
    return TAP_OK;
}


static int
tap_fx_route_cmp(const void *a, const void *b)
{
    const tap_froute_t  *x = a, *y = b;

    return x->prefix_len < y->prefix_len ? 1 : x->prefix_len > y->prefix_len ? -1 : 0;
}


int
tap_fconf_build(tap_fconf_t *fc, char **filters, size_t nfilters, char **routes, size_t nroutes,
    char **scores, size_t nscores, size_t capture, int inject_usage, char **err)
{
    tap_froute_t  *r;
    char          *left, *right;
    size_t         i, j;

    memset(fc, 0, sizeof(*fc));
    fc->capture = capture;
    fc->inject_usage = inject_usage ? 1 : 0;
    fc->routes = calloc(nroutes + 1, sizeof(tap_froute_t));
    fc->scores = calloc(nscores + 1, sizeof(tap_fscore_t));
    if (fc->routes == NULL || fc->scores == NULL) {
        goto nomem;
    }

    for (i = 0; i < nroutes; i++) {
        if (tap_fx_split_pair(routes[i], &left, &right) != TAP_OK || left[0] != '/') {
            if (left != NULL) {
                free(left);
                free(right);
            }
            *err = tap_fx_msg("route '", routes[i],
                "': expected \"/path/prefix = filter,filter\"", NULL);
            goto fail;
        }
        for (j = 0; j < fc->nroutes; j++) {
            if (strcmp(fc->routes[j].prefix, left) == 0) {
                *err = tap_fx_msg("route '", routes[i], "': prefix given twice", NULL);
                free(left);
                free(right);
                goto fail;
            }
        }
        r = &fc->routes[fc->nroutes++];
        r->prefix = left;
        r->prefix_len = strlen(left);
        if (tap_fx_route_filters(r, right, err) != TAP_OK) {
            free(right);
            goto fail;
        }
        free(right);
    }
    qsort(fc->routes, fc->nroutes, sizeof(tap_froute_t), tap_fx_route_cmp);

    r = &fc->routes[fc->nroutes++];
    r->prefix = strdup("");
    if (r->prefix == NULL) {
        goto nomem;
    }
    for (i = 0; i < nfilters; i++) {
        if (tap_fx_route_filters(r, filters[i], err) != TAP_OK) {
            goto fail;
        }
    }

    for (i = 0; i < nscores; i++) {
        if (tap_fx_split_pair(scores[i], &left, &right) != TAP_OK || left[0] == '\0'
            || (right[0] != '/' && right[0] != '\0'))
        {
            if (left != NULL) {
                free(left);
                free(right);
            }
            *err = tap_fx_msg("score '", scores[i],
                "': expected \"/path/prefix-or-model = /json/pointer\"", NULL);
            goto fail;
        }
        fc->scores[fc->nscores].match = left;
        fc->scores[fc->nscores].pointer = right;
        fc->nscores++;
    }
    return TAP_OK;

nomem:
    *err = strdup("out of memory");
fail:
    tap_fconf_cleanup(fc);
    return TAP_ERROR;
}


void
tap_fconf_cleanup(tap_fconf_t *fc)
{
    size_t  i;

    for (i = 0; fc->routes != NULL && i < fc->nroutes; i++) {
        free(fc->routes[i].prefix);
    }
    for (i = 0; fc->scores != NULL && i < fc->nscores; i++) {
        free(fc->scores[i].match);
        free(fc->scores[i].pointer);
    }
    free(fc->routes);
    free(fc->scores);
    memset(fc, 0, sizeof(*fc));
}


/* --- one exchange --------------------------------------------------------------------------- */


/* blocks of this thread's ended exchanges, kept for its next ones (a list through next) */
#define TAP_FX_SPARES  64

static __thread tap_fx_t  *tap_fx_spare;
static __thread unsigned   tap_fx_nspare;


/* A zeroed block of at least size bytes; a spare one keeps its capture buffer. */
static tap_fx_t *
tap_fx_alloc(size_t size)
{
    tap_fx_t  *fx = tap_fx_spare;
    char      *body;
    size_t     cap;

    if (fx != NULL) {
        tap_fx_spare = fx->next;
        tap_fx_nspare--;
        if (fx->size < size) {
            free(fx->body);
            free(fx);
            fx = NULL;
        }
    }
    if (fx == NULL) {
        fx = calloc(1, size);
        if (fx != NULL) {
            fx->size = size;
        }
        return fx;
    }
    body = fx->body;
    cap = fx->body_cap;
    size = fx->size;
    memset(fx, 0, size);
    fx->body = body;
    fx->body_cap = cap;
    fx->size = size;
    return fx;
}


void
tap_fx_thread_done(void)
{
    tap_fx_t  *fx;

    while ((fx = tap_fx_spare) != NULL) {
        tap_fx_spare = fx->next;
        free(fx->body);
        free(fx);
    }
    tap_fx_nspare = 0;
}


tap_fx_t *
tap_fx_begin(const tap_fconf_t *fc, tap_exchange_t *ex, const char *method, const char *path,
    size_t path_len)
{
    const tap_froute_t  *r = NULL;
    const tap_filter_t  *f;
    tap_fx_t            *fx;
    size_t               i, used = 0;
    int                  claimed = 0;

    for (i = 0; i < fc->nroutes; i++) {
        r = &fc->routes[i];
        if (r->prefix_len <= path_len && memcmp(r->prefix, path, r->prefix_len) == 0) {
            break;
        }
    }
    if (r == NULL || r->n == 0) {
        return NULL;
    }

    fx = tap_fx_alloc(sizeof(*fx) + r->state_size);
    if (fx == NULL) {
        return NULL;
    }
    fx->fc = fc;
    fx->route = r;
    fx->ex = ex;
    fx->gen = &ex->gen;
    fx->method = method;
    fx->path = path;
    fx->path_len = path_len;

    for (i = 0; i < r->n; i++) {
        f = r->filters[i];
        if (f->protocol && claimed) {
            continue;
        }
        if (f->match != NULL && !f->match(fx)) {
            continue;
        }
        if (f->protocol) {
            claimed = 1;
        }
        if (f->state_size > 0) {
            fx->state[fx->nactive] = fx->mem + used;
            used += tap_fx_round(f->state_size);
        }
        fx->active[fx->nactive++] = f;
    }
    if (fx->nactive == 0) {
        tap_fx_free(fx);
        return NULL;
    }
    ex->analysed = claimed;

    for (i = 0; i < fx->nactive; i++) {
        if (fx->active[i]->request_head != NULL) {
            fx->active[i]->request_head(fx, fx->state[i]);
        }
    }
    return fx;
}


/* Appends to a growing buffer; returns TAP_ERROR when memory runs out. */
static int
tap_fx_append(char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    size_t  c;
    char   *nb;

    if (*len + n > *cap) {
        c = *cap ? *cap : 1024;
        while (c < *len + n) {
            c *= 2;
        }
        nb = realloc(*buf, c);
        if (nb == NULL) {
            return TAP_ERROR;
        }
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
    return TAP_OK;
}


/* Appends to the capture buffer, up to the limit. */
static void
tap_fx_capture(tap_fx_t *fx, const char *p, size_t len)
{
    if (fx->body_over || len == 0) {
        return;
    }
    if (fx->body_len + len > fx->fc->capture
        || tap_fx_append(&fx->body, &fx->body_len, &fx->body_cap, p, len) != TAP_OK)
    {
        fx->body_over = 1;
        free(fx->body);
        fx->body = NULL;
        fx->body_len = fx->body_cap = 0;
    }
}


static void
tap_fx_reset_capture(tap_fx_t *fx)
{
    fx->body_len = 0;
    fx->body_over = 0;
}


void
tap_fx_request_data(tap_fx_t *fx, const char *p, size_t len)
{
    tap_fx_capture(fx, p, len);
}


int
tap_fx_request_end(tap_fx_t *fx, const char *body, size_t len)
{
    cJSON         *json = NULL;
    tap_gen_t     *g = fx->gen;
    size_t         i;

    if (body == NULL) {
        body = fx->body;
        len = fx->body_len;
    }
    if (fx->body_over) {
        g->req_parse = TAP_GEN_PARSE_TOO_LARGE;
        body = NULL;
        len = 0;
    } else if (len > 0) {
        json = tap_json_parse(body, len);
        g->req_parse = json != NULL ? TAP_GEN_PARSE_OK : TAP_GEN_PARSE_NOT_JSON;
        if (json != NULL && !tap_json_is_object(json)) {
            g->req_parse = TAP_GEN_PARSE_UNEXPECTED;   /* every API takes an object */
            tap_json_delete(json);
            json = NULL;
        }
    }

    for (i = 0; i < fx->nactive; i++) {
        if (fx->active[i]->request_body != NULL) {
            fx->active[i]->request_body(fx, fx->state[i], body, len, json);
        }
    }
    tap_json_delete(json);
    tap_fx_reset_capture(fx);
    return fx->new_body != NULL;
}


void
tap_fx_replace_body(tap_fx_t *fx, char *body, size_t len)
{
    free(fx->new_body);
    fx->new_body = body;
    fx->new_len = len;
}


/* Does the content type's media type equal mt (case-insensitive)? */
static int
tap_fx_ctype_is(const char *ct, size_t len, const char *mt)
{
    size_t  n = strlen(mt);

    while (len > 0 && (*ct == ' ' || *ct == '\t')) {
        ct++;
        len--;
    }
    if (len < n || strncasecmp(ct, mt, n) != 0) {
        return 0;
    }
    return len == n || ct[n] == ';' || ct[n] == ' ' || ct[n] == '\t';
}


void
tap_fx_response_head(tap_fx_t *fx, int status, const char *ctype, size_t ctype_len, int encoded,
    int can_strip)
{
    size_t  i;

    fx->status = status;
    fx->ctype = ctype;
    fx->ctype_len = ctype_len;
    tap_fx_reset_capture(fx);

    if (encoded) {
        fx->frame = TAP_FRAME_NONE;
        fx->gen->resp_parse = TAP_GEN_PARSE_COMPRESSED;
    } else if (ctype != NULL && tap_fx_ctype_is(ctype, ctype_len, "text/event-stream")) {
        fx->frame = TAP_FRAME_SSE;
    } else if (ctype != NULL && (tap_fx_ctype_is(ctype, ctype_len, "application/x-ndjson")
                   || tap_fx_ctype_is(ctype, ctype_len, "application/ndjson")
                   || tap_fx_ctype_is(ctype, ctype_len, "application/jsonl")
                   || tap_fx_ctype_is(ctype, ctype_len, "application/jsonlines")))
    {
        fx->frame = TAP_FRAME_NDJSON;
    } else {
        fx->frame = TAP_FRAME_JSON;
    }

    for (i = 0; i < fx->nactive; i++) {
        if (fx->active[i]->response_head != NULL) {
            fx->active[i]->response_head(fx, fx->state[i]);
        }
    }
    if (encoded) {
        fx->frame = TAP_FRAME_NONE;
    }

    if (fx->frame == TAP_FRAME_SSE) {
        tap_sse_init(&fx->sse, fx->fc->capture);
    } else if (fx->frame == TAP_FRAME_NDJSON) {
        tap_ndjson_init(&fx->nd, fx->fc->capture);
    }
    fx->strip = fx->usage_injected && can_strip && fx->frame == TAP_FRAME_SSE;
    fx->strip_on = fx->strip;
    fx->fed = 1;
}


cJSON *
tap_fev_json(const tap_fevent_t *ev)
{
    tap_fevent_t  *e = (tap_fevent_t *) ev;     /* the event's own cache, filled once */

    if (!e->parsed) {
        e->parsed = 1;
        e->json = tap_json_parse(e->data, e->len);
        e->valid = e->json != NULL;
    }
    return e->json;
}


void
tap_fev_valid(const tap_fevent_t *ev)
{
    ((tap_fevent_t *) ev)->valid = 1;
}


/* Runs the response_event hooks over one event. */
static void
tap_fx_event(tap_fx_t *fx, const char *data, size_t len, const char *name, int whole, int *drop)
{
    tap_fevent_t   ev;
    cJSON         *ptr;
    size_t         i, k;
    double         v;
    const char    *m;

    ev.data = data;
    ev.len = len;
    ev.name = name != NULL ? name : "";
    ev.whole = whole ? 1 : 0;
    ev.now = fx->now != 0 ? fx->now : tap_fx_now();
    ev.json = NULL;
    ev.parsed = 0;
    ev.valid = 0;
    for (k = 0; k < len && (data[k] == ' ' || data[k] == '\t' || data[k] == '\r'
                            || data[k] == '\n'); k++)
    {
        /* leading blanks */
    }
    if (k == len || (data[k] != '{' && data[k] != '[')) {
        ev.parsed = 1;                 /* not JSON, without asking the parser */
    }

    *drop = 0;
    for (i = 0; i < fx->nactive; i++) {
        if (fx->active[i]->response_event != NULL
            && fx->active[i]->response_event(fx, fx->state[i], &ev) == TAP_FEV_DROP)
        {
            *drop = 1;
        }
    }

    /*
     * A whole body or an NDJSON line that is not JSON says so.  No hook
     * writes resp_parse for data that is not JSON, so the verdict may come
     * after them, once a hook that read the data without its tree
     * (tap_fev_valid()) has said whether it was.
     */
    if ((whole || fx->frame == TAP_FRAME_NDJSON) && !ev.valid && tap_fev_json(&ev) == NULL) {
        fx->gen->resp_parse = TAP_GEN_PARSE_NOT_JSON;
    }

    /* a configured classifier score, for plain JSON answers */
    if (whole && fx->fc->nscores > 0 && tap_fev_json(&ev) != NULL) {
        for (i = 0; i < fx->fc->nscores; i++) {
            m = fx->fc->scores[i].match;
            if (m[0] == '/' ? (strlen(m) <= fx->path_len && memcmp(m, fx->path, strlen(m)) == 0)
                            : (strcmp(m, fx->gen->model) == 0
                               || strcmp(m, fx->gen->response_model) == 0))
            {
                ptr = tap_json_pointer(ev.json, fx->fc->scores[i].pointer);
                if (ptr != NULL && tap_gen_number(ptr, &v) == 0) {
                    tap_gen_score(fx->gen, v);
                }
                break;
            }
        }
    }
    tap_json_delete(ev.json);
}


/* Hands held bytes and then p[fwd, end) to the proxy. */
static void
tap_fx_forward(tap_fx_t *fx, const char *p, size_t end)
{
    if (fx->hold_len > 0) {
        fx->out(fx->out_ctx, fx->hold, fx->hold_len);
        fx->hold_len = 0;
    }
    if (end > fx->fwd) {
        fx->out(fx->out_ctx, p + fx->fwd, end - fx->fwd);
    }
    fx->fwd = end;
}


typedef struct {
    tap_fx_t    *fx;
    const char  *p;
    size_t       len;
} tap_fx_feed_t;


static int
tap_fx_on_sse(void *ctx, const tap_sse_event_t *ev)
{
    tap_fx_feed_t  *fd = ctx;
    tap_fx_t       *fx = fd->fx;
    size_t          end = ev->end;
    int             drop = 0;

    if (ev->data != NULL) {
        tap_fx_event(fx, ev->data, ev->len, ev->event, 0, &drop);
    }
    if (!fx->strip) {
        return 0;
    }
    drop = drop && fx->strip_on;

    /* the LF of a CRLF that ended the event belongs to it, also when it
     * comes in the next piece */
    if (end > 0 && fd->p[end - 1] == '\r') {
        if (end < fd->len) {
            end += fd->p[end] == '\n';
        } else {
            fx->lf = drop ? 2 : 1;
        }
    }
    if (drop) {
        fx->hold_len = 0;
        fx->fwd = end;
        return 0;
    }
    tap_fx_forward(fx, fd->p, end);
    return 0;
}


static int
tap_fx_on_line(void *ctx, const tap_ndjson_line_t *line)
{
    tap_fx_feed_t  *fd = ctx;
    int             drop;

    tap_fx_event(fd->fx, line->data, line->len, NULL, 0, &drop);
    return 0;
}


/* Keeps the unfinished tail of a piece while stripping. */
static void
tap_fx_hold(tap_fx_t *fx, const char *p, size_t len)
{
    if (len == 0) {
        return;
    }
    if (fx->strip_on && fx->hold_len + len <= fx->fc->capture
        && tap_fx_append(&fx->hold, &fx->hold_len, &fx->hold_cap, p, len) == TAP_OK)
    {
        return;
    }
    /* too long to wait for: forward as it comes from now on */
    fx->strip_on = 0;
    if (fx->hold_len > 0) {
        fx->out(fx->out_ctx, fx->hold, fx->hold_len);
        fx->hold_len = 0;
    }
    fx->out(fx->out_ctx, p, len);
}


void
tap_fx_response_data(tap_fx_t *fx, const char *p, size_t len,
    void (*out)(void *ctx, const char *p, size_t len), void *ctx)
{
    tap_fx_feed_t  fd;

    fx->out = out;
    fx->out_ctx = ctx;
    fd.fx = fx;
    fd.p = p;
    fd.len = len;

    switch (fx->frame) {
    case TAP_FRAME_SSE:
        fx->fwd = 0;
        if (fx->lf != 0 && len > 0) {
            if (p[0] == '\n') {
                if (fx->lf == 1) {
                    out(ctx, p, 1);
                }
                fx->fwd = 1;
            }
            fx->lf = 0;
        }
        tap_sse_feed(&fx->sse, p, len, tap_fx_on_sse, &fd);
        if (fx->strip) {
            tap_fx_hold(fx, p + fx->fwd, len - fx->fwd);
        }
        return;

    case TAP_FRAME_NDJSON:
        tap_ndjson_feed(&fx->nd, p, len, tap_fx_on_line, &fd);
        return;

    case TAP_FRAME_JSON:
        tap_fx_capture(fx, p, len);
        return;

    default:
        return;
    }
}


void
tap_fx_complete(tap_fx_t *fx, int cut, void (*out)(void *ctx, const char *p, size_t len),
    void *ctx)
{
    tap_gen_t      *g = fx->gen;
    tap_exchange_t *ex = fx->ex;
    tap_fx_feed_t   fd;
    size_t          i;
    int             drop;

    fd.fx = fx;
    fd.p = NULL;
    fd.len = 0;
    fx->cut = cut ? 1 : 0;

    if (fx->fed) {
        switch (fx->frame) {
        case TAP_FRAME_SSE:
            if (tap_sse_finish(&fx->sse)) {
                fx->cut = 1;
            }
            if (fx->strip && fx->hold_len > 0 && out != NULL) {
                out(ctx, fx->hold, fx->hold_len);
                fx->hold_len = 0;
            }
            break;
        case TAP_FRAME_NDJSON:
            tap_ndjson_finish(&fx->nd, tap_fx_on_line, &fd);
            break;
        case TAP_FRAME_JSON:
            if (fx->body_over) {
                g->resp_parse = TAP_GEN_PARSE_TOO_LARGE;
            } else if (fx->body_len > 0) {
                tap_fx_event(fx, fx->body, fx->body_len, NULL, 1, &drop);
            }
            break;
        default:
            break;
        }
        if (fx->cut) {
            g->resp_parse = TAP_GEN_PARSE_CUT;
        } else if (g->resp_parse == TAP_GEN_PARSE_NONE && fx->frame != TAP_FRAME_NONE) {
            g->resp_parse = TAP_GEN_PARSE_OK;
        }
    }

    for (i = 0; i < fx->nactive; i++) {
        if (fx->active[i]->complete != NULL) {
            fx->active[i]->complete(fx, fx->state[i]);
        }
    }
    tap_gen_finish(g);

    if (g->first_token > 0 && ex->t_req > 0 && g->first_token >= ex->t_req) {
        ex->ttft_ms = (double) (g->first_token - ex->t_req) / 1e6;
    }
    if (g->first_token > 0 && g->last_token > g->first_token && g->completion_tokens >= 2) {
        ex->tpot_ms = (double) (g->last_token - g->first_token) / 1e6
                      / (double) (g->completion_tokens - 1);
    }
    if (g->token_events >= 2) {
        ex->itl_max_ms = (double) g->max_gap / 1e6;
    }
}


void
tap_fx_free(tap_fx_t *fx)
{
    if (fx == NULL) {
        return;
    }
    if (fx->fed) {
        if (fx->frame == TAP_FRAME_SSE) {
            tap_sse_cleanup(&fx->sse);
        } else if (fx->frame == TAP_FRAME_NDJSON) {
            tap_ndjson_cleanup(&fx->nd);
        }
    }
    free(fx->new_body);
    free(fx->hold);
    if (fx->body_cap > TAP_FX_KEEP) {
        free(fx->body);
        fx->body = NULL;
        fx->body_cap = 0;
    }
    if (tap_fx_nspare < TAP_FX_SPARES && !TAP_ASAN) {
        fx->next = tap_fx_spare;
        tap_fx_spare = fx;
        tap_fx_nspare++;
        return;
    }
    free(fx->body);
    free(fx);
}
