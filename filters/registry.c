/*
 * registry.c: every filter infertap knows, by name.  Configuration refers to
 * them by these names (`filters:`, `routes:`).
 */

#include <stddef.h>

#include "filters/filters.h"

const tap_filter_t  *tap_filters[] = {
    &tap_filter_openai,
    &tap_filter_ollama,
    &tap_filter_tgi,
    &tap_filter_llamacpp,
    &tap_filter_kserve,
    NULL,
};
