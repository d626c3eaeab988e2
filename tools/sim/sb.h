/*
 * sb.h: a growable byte string used to build response bodies and events.
 *
 * The hot path formats JSON by hand into one of these (no DOM), so the
 * helpers here cover what the simulator writes: raw bytes, printf-style
 * numbers and JSON string literals with escaping.  Allocation failure aborts
 * the process: bodies are bounded (a few KiB per token list) and the
 * simulator is a test tool.
 */

#ifndef TAP_SIM_SB_H
#define TAP_SIM_SB_H

#include <stddef.h>

typedef struct tap_sim_sb_s {
    char    *p;
    size_t   len;
    size_t   cap;
} tap_sim_sb_t;

void tap_sim_sb_init(tap_sim_sb_t *sb);
void tap_sim_sb_cleanup(tap_sim_sb_t *sb);
void tap_sim_sb_reset(tap_sim_sb_t *sb);
void tap_sim_sb_reserve(tap_sim_sb_t *sb, size_t more);
void tap_sim_sb_add(tap_sim_sb_t *sb, const char *s, size_t len);
void tap_sim_sb_adds(tap_sim_sb_t *sb, const char *s);
void tap_sim_sb_addc(tap_sim_sb_t *sb, char c);
void tap_sim_sb_addf(tap_sim_sb_t *sb, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void tap_sim_sb_add_u64(tap_sim_sb_t *sb, unsigned long long v);
void tap_sim_sb_add_i64(tap_sim_sb_t *sb, long long v);
void tap_sim_sb_add_lp(tap_sim_sb_t *sb, double v);
double tap_sim_lp_round(double v);
void tap_sim_sb_add_jstr(tap_sim_sb_t *sb, const char *s, size_t len);
void tap_sim_sb_add_bytes_array(tap_sim_sb_t *sb, const char *s, size_t len);


#endif /* TAP_SIM_SB_H */
