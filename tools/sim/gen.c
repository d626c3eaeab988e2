/*
 * gen.c: deterministic text, log-probabilities, embeddings and class
 * probabilities.
 *
 * Everything derives from splitmix64 applied to (seed, index), so any token
 * can be produced on its own, in any order, on any thread, without state.
 * The temperature only scales how far log-probabilities spread below zero;
 * the chosen words never depend on it.  Alternatives for top_logprobs are
 * other vocabulary words with strictly lower log-probabilities.
 */

#include "config.h"

#include <math.h>
#include <string.h>

#include <xxhash.h>

#include "gen.h"
#include "tap_core.h"

static const char *const  tap_sim_vocab[] = {
    "the", "model", "answer", "is", "a", "simple", "test", "of", "signal", "and",
    "light", "river", "stone", "paper", "window", "garden", "quiet", "rapid", "data",
    "token", "stream", "value", "north", "south", "east", "west", "green", "blue",
    "amber", "silver", "copper", "iron", "cloud", "rain", "snow", "wind", "storm",
    "ocean", "harbor", "bridge", "tower", "market", "street", "village", "city",
    "forest", "meadow", "valley", "mountain", "island", "desert", "lake", "field",
    "morning", "evening", "night", "noon", "winter", "summer", "spring", "autumn",
    "number", "letter", "word", "sentence", "story", "chapter", "book", "page",
    "line", "circle", "square", "triangle", "point", "angle", "curve", "surface",
    "engine", "wheel", "gear", "lever", "spring", "valve", "pump", "pipe", "wire",
    "cable", "switch", "lamp", "clock", "mirror", "table", "chair", "door", "floor",
    "roof", "wall", "room", "house", "school", "office", "station", "train", "ship",
    "plane", "road", "path", "trail", "map", "compass", "journey", "voyage", "goal",
    "plan", "idea", "reason", "method", "result", "measure", "sample", "figure",
    "graph", "chart", "report", "summary", "detail", "example", "question", "reply",
    "request", "response", "server", "client", "network", "packet", "buffer", "queue",
    "thread", "process", "memory", "cache", "store", "record", "field", "index",
    "layer", "vector", "matrix", "weight", "bias", "gradient", "batch", "epoch",
    "loss", "score", "metric", "trace", "span", "event", "log", "alert", "status",
    "healthy", "ready", "stable", "steady", "careful", "bright", "dark", "warm",
    "cold", "soft", "hard", "small", "large", "early", "late", "first", "last",
    "next", "other", "same", "new", "old", "good", "fine", "clear", "open", "closed",
    "full", "empty", "high", "low", "near", "far", "long", "short", "wide", "narrow",
    "runs", "walks", "reads", "writes", "builds", "finds", "keeps", "sends", "takes",
    "gives", "makes", "holds", "turns", "moves", "grows", "falls", "rises", "shows",
    "tells", "asks", "knows", "sees", "hears", "feels", "thinks", "learns", "counts",
    "checks", "waits", "starts", "stops", "joins", "splits", "merges", "sorts", "maps",
    "in", "on", "at", "by", "for", "with", "from", "to", "over", "under", "through",
    "between", "after", "before", "during", "while", "because", "so", "then", "when",
    "where", "why", "how", "which", "that", "this", "these", "those", "it", "they",
    "we", "you", "one", "two", "three", "four", "five", "many", "few", "each", "every",
    "some", "all", "most", "more", "less", "very", "quite", "also", "only", "still",
};

#define TAP_SIM_VOCAB  (sizeof(tap_sim_vocab) / sizeof(tap_sim_vocab[0]))


uint64_t
tap_sim_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}


/* A double in [0, 1) from 53 bits of h. */
double
tap_sim_unit(uint64_t h)
{
    return (double) (h >> 11) * (1.0 / 9007199254740992.0);
}


uint64_t
tap_sim_hash(const void *p, size_t len)
{
    return XXH3_64bits(p, len);
}


void
tap_sim_gen_init(tap_sim_gen_t *g, uint64_t seed, double temperature, double drift)
{
    double  t;

    t = temperature;
    if (t != t || t < 0) {
        t = 0;
    }
    if (t > 2) {
        t = 2;
    }

    g->seed = seed;
    g->spread = 0.2 + 0.4 * t;
    g->drift = drift;
}


static void
tap_sim_gen_word(unsigned id, tap_sim_tok_t *tok)
{
    tok->id = id;
    tok->text = tap_sim_vocab[id];
    tok->len = strlen(tok->text);
}


/*
 * Token i of the completion.  tok->text points at the bare word; callers
 * prepend a space for i > 0.
 */
void
tap_sim_gen_token(const tap_sim_gen_t *g, unsigned i, tap_sim_tok_t *tok)
{
    uint64_t  h;

    h = tap_sim_mix64(g->seed ^ tap_sim_mix64((uint64_t) i + 1));
    tap_sim_gen_word((unsigned) (h % TAP_SIM_VOCAB), tok);
    tok->logprob = -0.001 - 2.999 * g->spread * tap_sim_unit(tap_sim_mix64(h)) - g->drift;
}


/*
 * Alternative k (1-based) for token i: a different word, log-probability
 * strictly below the previous alternative.
 */
void
tap_sim_gen_alt(const tap_sim_gen_t *g, unsigned i, const tap_sim_tok_t *chosen,
    unsigned k, tap_sim_tok_t *alt)
{
    uint64_t  h;
    double    lp;
    unsigned  j;

    lp = chosen->logprob;
    h = tap_sim_mix64(g->seed ^ tap_sim_mix64((uint64_t) i + 1) ^ 0x5bd1e995ULL);
    for (j = 1; j <= k; j++) {
        lp -= 0.05 + 0.5 * tap_sim_unit(tap_sim_mix64(h + j));
    }

    tap_sim_gen_word((unsigned) ((chosen->id + k * 37) % TAP_SIM_VOCAB), alt);
    alt->logprob = lp;
}


/* Whitespace-separated words of s. */
unsigned
tap_sim_count_words(const char *s, size_t len)
{
    unsigned  n;
    int       in;
    size_t    i;
    char      c;

    n = 0;
    in = 0;
    for (i = 0; i < len; i++) {
        c = s[i];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
            in = 0;

        } else if (!in) {
            in = 1;
            n++;
        }
    }

    return n;
}


/* A unit-length vector of TAP_SIM_EMBED_DIM floats. */
void
tap_sim_embed(uint64_t h, float out[TAP_SIM_EMBED_DIM])
{
    double    v[TAP_SIM_EMBED_DIM], norm;
    unsigned  i;

    norm = 0;
    for (i = 0; i < TAP_SIM_EMBED_DIM; i++) {
        v[i] = tap_sim_unit(tap_sim_mix64(h + i)) * 2.0 - 1.0;
        norm += v[i] * v[i];
    }

    norm = sqrt(norm);
    if (norm < 1e-9) {
        norm = 1;
    }
    for (i = 0; i < TAP_SIM_EMBED_DIM; i++) {
        out[i] = (float) (v[i] / norm);
    }
}


/*
 * Class probabilities: the softmax of pseudo-random logits.  A drift lowers
 * the top logit, moving probability mass to the other classes.
 */
void
tap_sim_classify(uint64_t h, double drift, double out[TAP_SIM_CLASSES])
{
    double    logit[TAP_SIM_CLASSES], sum, max;
    unsigned  i, top;

    top = 0;
    for (i = 0; i < TAP_SIM_CLASSES; i++) {
        logit[i] = tap_sim_unit(tap_sim_mix64(h ^ tap_sim_mix64(i + 1))) * 4.0;
        if (logit[i] > logit[top]) {
            top = i;
        }
    }

    logit[top] -= drift;
    max = logit[0];
    for (i = 1; i < TAP_SIM_CLASSES; i++) {
        max = TAP_MAX(max, logit[i]);
    }

    sum = 0;
    for (i = 0; i < TAP_SIM_CLASSES; i++) {
        out[i] = exp(logit[i] - max);
        sum += out[i];
    }
    for (i = 0; i < TAP_SIM_CLASSES; i++) {
        out[i] /= sum;
    }
}
