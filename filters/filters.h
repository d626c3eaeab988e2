/*
 * filters.h: the filters infertap ships.  filters/registry.c lists them in
 * tap_filters[], the order `infertap -T` shows and the default chain uses.
 */

#ifndef TAP_FILTERS_H
#define TAP_FILTERS_H

#include "filter.h"

extern const tap_filter_t  tap_filter_openai;
extern const tap_filter_t  tap_filter_ollama;
extern const tap_filter_t  tap_filter_tgi;
extern const tap_filter_t  tap_filter_llamacpp;
extern const tap_filter_t  tap_filter_kserve;

/*
 * The OpenAI request body b with stream_options.include_usage set to true,
 * everything else byte for byte as it was; malloc'd, or NULL when b is not a
 * JSON object it can follow.
 */
char *tap_openai_inject_usage(const char *b, size_t len, size_t *outlen);

/* Non-zero (the default): stream chunks and answers are read without a tree where they can be. */
extern int  tap_openai_reader;

#endif /* TAP_FILTERS_H */
