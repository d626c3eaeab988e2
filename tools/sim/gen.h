/*
 * gen.h: the deterministic "model" of infertap-sim.
 *
 * A completion is a function of a 64-bit text seed (derived from the prompt,
 * --seed and the request's seed) and the token index, so streaming and
 * non-streaming responses, and any replay, produce identical text and
 * log-probabilities.  Tokens are words of a fixed ASCII vocabulary.
 */

#ifndef TAP_SIM_GEN_H
#define TAP_SIM_GEN_H

#include <stddef.h>
#include <stdint.h>

#define TAP_SIM_TOP_MAX     20
#define TAP_SIM_EMBED_DIM   8
#define TAP_SIM_CLASSES     3

typedef struct tap_sim_tok_s {
    unsigned     id;                /* vocabulary index */
    const char  *text;              /* with the leading space for i > 0 */
    size_t       len;
    double       logprob;
} tap_sim_tok_t;

typedef struct tap_sim_gen_s {
    uint64_t     seed;
    double       spread;            /* from the temperature */
    double       drift;             /* subtracted from every logprob */
} tap_sim_gen_t;

uint64_t tap_sim_mix64(uint64_t x);
double tap_sim_unit(uint64_t h);
uint64_t tap_sim_hash(const void *p, size_t len);

void tap_sim_gen_init(tap_sim_gen_t *g, uint64_t seed, double temperature, double drift);
void tap_sim_gen_token(const tap_sim_gen_t *g, unsigned i, tap_sim_tok_t *tok);
void tap_sim_gen_alt(const tap_sim_gen_t *g, unsigned i, const tap_sim_tok_t *chosen,
    unsigned k, tap_sim_tok_t *alt);

unsigned tap_sim_count_words(const char *s, size_t len);

void tap_sim_embed(uint64_t h, float out[TAP_SIM_EMBED_DIM]);
void tap_sim_classify(uint64_t h, double drift, double out[TAP_SIM_CLASSES]);


#endif /* TAP_SIM_GEN_H */
