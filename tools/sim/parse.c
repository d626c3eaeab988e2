/*
 * parse.c: typed access to request JSON for every protocol of the
 * simulator, with vLLM-style 400 answers.
 *
 * Each helper either leaves its output untouched (key absent or null),
 * stores a value of the right type and range, or writes a 400 response,
 * finishes the request and returns TAP_ERROR, so handlers stay a flat list
 * of "if (helper(...) != TAP_OK) goto done;".
 */

#include "config.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "gen.h"
#include "job.h"


void
tap_sim_bad(tap_sim_req_t *r, const char *fmt, ...)
{
    char     msg[256];
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    tap_sim_req_error(r, 400, msg);
    tap_sim_req_finish(r);
}


json_t *
tap_sim_body_json(tap_sim_req_t *r)
{
    json_error_t  err;
    json_t       *root;

    if (r->body_len == 0) {
        tap_sim_bad(r, "request body is empty");
        return NULL;
    }

    root = json_loadb(r->body, r->body_len, JSON_DECODE_ANY, &err);
    if (root == NULL) {
        tap_sim_bad(r, "invalid JSON: %s (line %d, column %d)", err.text, err.line,
                    err.column);
        return NULL;
    }

    if (!json_is_object(root)) {
        json_decref(root);
        tap_sim_bad(r, "request body must be a JSON object");
        return NULL;
    }

    return root;
}


int
tap_sim_opt_int(tap_sim_req_t *r, json_t *o, const char *key, long long lo, long long hi,
    long long *v)
{
    json_t     *j;
    long long   x;
    double      d;

    j = json_object_get(o, key);
    if (j == NULL || json_is_null(j)) {
        return TAP_OK;
    }

    d = json_is_real(j) ? json_real_value(j) : 0.5;
    if (json_is_integer(j)) {
        x = (long long) json_integer_value(j);

    } else if (json_is_real(j) && d >= -9e15 && d <= 9e15 && d == (double) (long long) d) {
        x = (long long) d;

    } else {
        tap_sim_bad(r, "'%s' must be an integer", key);
        return TAP_ERROR;
    }

    if (x < lo || x > hi) {
        tap_sim_bad(r, "'%s' must be between %lld and %lld", key, lo, hi);
        return TAP_ERROR;
    }

    *v = x;
    return TAP_OK;
}


int
tap_sim_opt_num(tap_sim_req_t *r, json_t *o, const char *key, double lo, double hi, double *v)
{
    json_t  *j;
    double   x;

    j = json_object_get(o, key);
    if (j == NULL || json_is_null(j)) {
        return TAP_OK;
    }

    if (!json_is_number(j)) {
        tap_sim_bad(r, "'%s' must be a number", key);
        return TAP_ERROR;
    }

    x = json_number_value(j);
    if (!(x >= lo && x <= hi)) {
        tap_sim_bad(r, "'%s' must be between %g and %g", key, lo, hi);
        return TAP_ERROR;
    }

    *v = x;
    return TAP_OK;
}


int
tap_sim_opt_bool(tap_sim_req_t *r, json_t *o, const char *key, int *v)
{
    json_t  *j;

    j = json_object_get(o, key);
    if (j == NULL || json_is_null(j)) {
        return TAP_OK;
    }

    if (!json_is_boolean(j)) {
        tap_sim_bad(r, "'%s' must be a boolean", key);
        return TAP_ERROR;
    }

    *v = json_is_true(j);
    return TAP_OK;
}


int
tap_sim_opt_str(tap_sim_req_t *r, json_t *o, const char *key, const char **s, size_t *len)
{
    json_t  *j;

    j = json_object_get(o, key);
    if (j == NULL || json_is_null(j)) {
        return TAP_OK;
    }

    if (!json_is_string(j)) {
        tap_sim_bad(r, "'%s' must be a string", key);
        return TAP_ERROR;
    }

    *s = json_string_value(j);
    *len = json_string_length(j);
    return TAP_OK;
}


int
tap_sim_opt_obj(tap_sim_req_t *r, json_t *o, const char *key, json_t **v)
{
    json_t  *j;

    j = json_object_get(o, key);
    if (j == NULL || json_is_null(j)) {
        return TAP_OK;
    }

    if (!json_is_object(j)) {
        tap_sim_bad(r, "'%s' must be an object", key);
        return TAP_ERROR;
    }

    *v = j;
    return TAP_OK;
}


/*
 * A prompt-like value: a string, an array of strings (joined by newlines) or
 * an array of token ids (written as numbers).  Appends the canonical text to
 * sb and adds its word count to *words.
 */
int
tap_sim_prompt_value(tap_sim_req_t *r, json_t *v, const char *key, tap_sim_sb_t *sb,
    unsigned *words)
{
    json_t  *e;
    size_t   i, start;

    if (json_is_string(v)) {
        start = sb->len;
        tap_sim_sb_add(sb, json_string_value(v), json_string_length(v));
        *words += tap_sim_count_words(sb->p + start, sb->len - start);
        return TAP_OK;
    }

    if (!json_is_array(v) || json_array_size(v) == 0) {
        tap_sim_bad(r, "'%s' must be a string or a non-empty array", key);
        return TAP_ERROR;
    }

    json_array_foreach(v, i, e) {
        if (i > 0) {
            tap_sim_sb_addc(sb, '\n');
        }
        if (json_is_string(e)) {
            start = sb->len;
            tap_sim_sb_add(sb, json_string_value(e), json_string_length(e));
            *words += tap_sim_count_words(sb->p + start, sb->len - start);

        } else if (json_is_integer(e)) {
            tap_sim_sb_add_i64(sb, (long long) json_integer_value(e));
            *words += 1;

        } else {
            tap_sim_bad(r, "'%s' must contain only strings or token ids", key);
            return TAP_ERROR;
        }
    }

    return TAP_OK;
}


void
tap_sim_params_init(tap_sim_params_t *p, const tap_sim_api_t *api)
{
    memset(p, 0, sizeof(*p));
    p->api = api;
    p->max_tokens = -1;
    p->temperature = 1.0;
    p->top_n = -1;
}
