/*
 * kserve.c: the KServe / Open Inference Protocol (v2) REST inference call as
 * a protocol filter.
 *
 * Endpoints: POST /v2/models/{name}/infer and
 * POST /v2/models/{name}/versions/{version}/infer.  The model is the {name}
 * of the path (a "model" or "model_name" field in the body wins, for
 * gateways that add one); the version is not part of it.  The request's
 * "inputs" tensors are the prompt: the prompt hash is taken over the model
 * and the canonical JSON of "inputs" (names, shapes, datatypes and data, key
 * order and number spelling not mattering), so two identical inference
 * calls hash alike.  The request's "parameters" object goes into the params
 * hash.  Nothing streams.
 *
 * The answer is {"model_name", "model_version", "id", "outputs": [{"name",
 * "shape", "datatype", "data"}]}.  For a classifier the first output holds
 * the class probabilities: when it is a floating-point tensor (FP16, BF16,
 * FP32, FP64) whose values all lie in [0, 1], its largest value is recorded
 * as the classifier score.  Anything else (logits, integers, strings) gives
 * no score; a score configured for the route or model as a JSON pointer
 * (filter.c, fc->scores) is applied after this filter and overrides it.
 * Errors are {"error": "message"}, recorded as type "error".
 */

#include "config.h"

#include <string.h>

#include "filters.h"

#define TAP_KSERVE_PREFIX   "/v2/models/"
#define TAP_KSERVE_DEPTH    8          /* nesting of a data array that is followed */


static int tap_kserve_match(tap_fx_t *fx);
static void tap_kserve_request_body(tap_fx_t *fx, void *st, const char *body, size_t len,
    cJSON  *json);
static int tap_kserve_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev);


const tap_filter_t  tap_filter_kserve = {
    .name = "kserve",
    .protocol = 1,
    .state_size = 0,
    .match = tap_kserve_match,
    .request_body = tap_kserve_request_body,
    .response_event = tap_kserve_response_event,
};


/*
 * Finds {name} in "/v2/models/{name}/infer" or
 * "/v2/models/{name}/versions/{v}/infer"; returns its length (0: no match)
 * and its start in *name.
 */
static size_t
tap_kserve_path(const char *path, size_t len, const char **name)
{
    const char  *p, *end, *slash, *v;
    size_t       n;

    n = sizeof(TAP_KSERVE_PREFIX) - 1;
    if (len <= n || memcmp(path, TAP_KSERVE_PREFIX, n) != 0) {
        return 0;
    }
    p = path + n;
    end = path + len;
    slash = memchr(p, '/', (size_t) (end - p));
    if (slash == NULL || slash == p) {
        return 0;
    }
    *name = p;
    n = (size_t) (slash - p);

    p = slash + 1;
    if ((size_t) (end - p) == 5 && memcmp(p, "infer", 5) == 0) {
        return n;
    }
    if ((size_t) (end - p) <= 9 || memcmp(p, "versions/", 9) != 0) {
        return 0;
    }
    v = p + 9;
    slash = memchr(v, '/', (size_t) (end - v));
    if (slash == NULL || slash == v) {
        return 0;
    }
    p = slash + 1;
    if ((size_t) (end - p) == 5 && memcmp(p, "infer", 5) == 0) {
        return n;
    }
    return 0;
}


static void
tap_kserve_set_model(tap_gen_t *g, const char *name, size_t n)
{
    if (n >= TAP_GEN_STR) {
        n = TAP_GEN_STR - 1;
    }
    memcpy(g->model, name, n);
    g->model[n] = '\0';
}


static int
tap_kserve_match(tap_fx_t *fx)
{
    const char  *name;
    size_t       n;

    if (fx->method == NULL || strcmp(fx->method, "POST") != 0) {
        return 0;
    }
    n = tap_kserve_path(fx->path, fx->path_len, &name);
    if (n == 0) {
        return 0;
    }
    fx->gen->provider = tap_filter_kserve.name;
    fx->gen->operation = "infer";
    fx->gen->stream = 0;
    tap_kserve_set_model(fx->gen, name, n);
    return 1;
}


static void
tap_kserve_request_body(tap_fx_t *fx, void *st, const char *body, size_t len, cJSON *json)
{
    tap_gen_t     *g = fx->gen;
    XXH3_state_t  *h;
    cJSON         *inputs, *params;

    (void) st;
    (void) body;
    (void) len;

    if (json == NULL) {
        return;
    }

    tap_gen_copy(g->model, tap_json_get(json, "model_name"));
    tap_gen_copy(g->model, tap_json_get(json, "model"));

    params = tap_json_get(json, "parameters");
    tap_gen_hash_params(g, tap_json_is_object(params) && tap_json_size(params) > 0
                           ? params : NULL);

    inputs = tap_json_get(json, "inputs");
    if (!tap_json_is_array(inputs)) {
        g->req_parse = TAP_GEN_PARSE_UNEXPECTED;
        return;
    }
    h = XXH3_createState();
    if (h == NULL) {
        return;
    }
    XXH3_64bits_reset(h);
    tap_hash_field(h, 'M', g->model, strlen(g->model));
    tap_hash_json(h, inputs);
    g->prompt_hash = XXH3_64bits_digest(h);
    g->has_prompt_hash = 1;
    XXH3_freeState(h);
}


/*
 * The largest number of a (possibly nested) data array into *max, which
 * the caller sets to 0 (every value taken is >= 0, and a nested array must
 * not forget what its siblings held); returns -1 when an element is not a
 * number or lies outside [0, 1], else the count of numbers seen.
 */
static int64_t
tap_kserve_max(cJSON *data, double *max, unsigned depth)
{
    cJSON    *e;
    size_t    i;
    int64_t   n = 0, k;
    double    v;

    if (depth > TAP_KSERVE_DEPTH) {
        return -1;
    }
    tap_json_foreach(data, i, e) {
        if (tap_json_is_array(e)) {
            k = tap_kserve_max(e, max, depth + 1);
            if (k < 0) {
                return -1;
            }
            n += k;
            continue;
        }
        if (tap_gen_number(e, &v) != 0 || !(v >= 0.0 && v <= 1.0)) {
            return -1;
        }
        if (v > *max) {
            *max = v;
        }
        n++;
    }
    return n;
}


static int
tap_kserve_is_float(cJSON *dt)
{
    const char  *s = tap_json_string(dt);

    return s != NULL && (strcmp(s, "FP32") == 0 || strcmp(s, "FP64") == 0
                         || strcmp(s, "FP16") == 0 || strcmp(s, "BF16") == 0);
}


static int
tap_kserve_response_event(tap_fx_t *fx, void *st, const tap_fevent_t *ev)
{
    tap_gen_t  *g = fx->gen;
    cJSON      *j = tap_fev_json(ev), *v, *out, *data;
    double      max = 0.0;

    (void) st;

    if (!tap_json_is_object(j)) {
        return TAP_FEV_PASS;
    }
    v = tap_json_get(j, "error");
    if (v != NULL && !tap_json_is_null(v)) {
        tap_gen_error(g, "error", 5);
        return TAP_FEV_PASS;
    }
    tap_gen_copy(g->response_model, tap_json_get(j, "model_name"));
    tap_gen_copy(g->response_id, tap_json_get(j, "id"));

    out = tap_json_at(tap_json_get(j, "outputs"), 0);
    data = tap_json_get(out, "data");
    if (!tap_kserve_is_float(tap_json_get(out, "datatype")) || !tap_json_is_array(data)) {
        return TAP_FEV_PASS;
    }
    if (tap_kserve_max(data, &max, 0) > 0) {
        tap_gen_score(g, max);
    }
    return TAP_FEV_PASS;
}
