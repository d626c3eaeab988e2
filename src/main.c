/*
 * main.c: infertap's command line.
 *
 * Reads the flags, then builds the configuration in its layers: built-in defaults, the file
 * given with -c, the environment (INFERTAP_* and OTEL_*), and last the flags themselves, which
 * are therefore collected first and applied only after the file and the environment.  Every
 * flag is a shorthand for one configuration key (--set reaches any of them), so there is a single
 * place where values are parsed.  This is the only file that exits on a bad configuration:
 * status 2 for a usage error, 1 for a configuration error, else whatever the proxy returns.
 */

#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <llhttp.h>
#include <openssl/crypto.h>

#include "conf.h"
#include "run.h"
#include "version.h"

#define TAP_EXIT_CONFIG 1
#define TAP_EXIT_USAGE 2

enum {
    TAP_OPT_LISTEN = 256,
    TAP_OPT_UPSTREAM,
    TAP_OPT_ADMIN,
    TAP_OPT_OTLP_ENDPOINT,
    TAP_OPT_SERVICE_NAME,
    TAP_OPT_ACCESS_LOG,
    TAP_OPT_WORKERS,
    TAP_OPT_SET,
};

/* A flag waiting to be applied once the file and the environment have been read. */
typedef struct tap_main_flag_s {
    const char *key;
    const char *value;
    char *owned; /* for --set: the copy key and value point into */
} tap_main_flag_t;

static const struct option tap_main_options[] = {
    {"config", required_argument, NULL, 'c'},
    {"listen", required_argument, NULL, TAP_OPT_LISTEN},
    {"upstream", required_argument, NULL, TAP_OPT_UPSTREAM},
    {"admin", required_argument, NULL, TAP_OPT_ADMIN},
    {"otlp-endpoint", required_argument, NULL, TAP_OPT_OTLP_ENDPOINT},
    {"service-name", required_argument, NULL, TAP_OPT_SERVICE_NAME},
    {"access-log", required_argument, NULL, TAP_OPT_ACCESS_LOG},
    {"workers", required_argument, NULL, TAP_OPT_WORKERS},
    {"set", required_argument, NULL, TAP_OPT_SET},
    {"test", no_argument, NULL, 't'},
    {"items", no_argument, NULL, 'T'},
    {"version", no_argument, NULL, 'V'},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void
tap_main_usage(FILE *out)
{
    fprintf(
        out,
        "usage: infertap [-c FILE] [--listen ADDR]... [--upstream URL]... [--admin ADDR]\n"
        "                [--otlp-endpoint URL]... [--service-name NAME] [--access-log PATH|-]\n"
        "                [--workers N] [--set KEY=VALUE]... [-t] [-T] [-V] [-h]\n"
        "\n"
        "  -c, --config FILE       read the YAML configuration FILE\n"
        "  --listen ADDR           listen on ADDR (host:port, [v6]:port); repeat for more\n"
        "  --upstream URL          send requests to URL (http:// or https://); repeat for more\n"
        "  --admin ADDR            admin server address, or off\n"
        "  --otlp-endpoint URL     export OTLP/HTTP to URL; repeat for more\n"
        "  --service-name NAME     service.name of the exported telemetry\n"
        "  --access-log PATH|-     JSON access log file, - for stdout, or off\n"
        "  --workers N             worker threads (0: one per core)\n"
        "  --set KEY=VALUE         set any configuration key (see -T)\n"
        "  -t, --test              check the configuration and exit\n"
        "  -T, --items             list every configuration key and exit\n"
        "  -V, --version           print the version and exit\n"
        "  -h, --help              print this help and exit\n"
        "\n"
        "Precedence: defaults < FILE < environment (INFERTAP_<KEY>, OTEL_*) < flags.\n");
}

static void
tap_main_version(void)
{
    printf("infertap %s\n", TAP_VERSION);
    printf("(llhttp %d.%d.%d, libevent %s, OpenSSL %s)\n", LLHTTP_VERSION_MAJOR,
           LLHTTP_VERSION_MINOR, LLHTTP_VERSION_PATCH, event_get_version(),
#ifdef OPENSSL_VERSION_STRING
           OpenSSL_version(OPENSSL_VERSION_STRING)
#else
           OpenSSL_version(OPENSSL_VERSION)
#endif
    );
}

static const char *
tap_main_flag_key(int opt)
{
    switch (opt) {
    case TAP_OPT_LISTEN:
        return "listen";
    case TAP_OPT_UPSTREAM:
        return "upstreams";
    case TAP_OPT_ADMIN:
        return "admin";
    case TAP_OPT_OTLP_ENDPOINT:
        return "otlp.endpoint";
    case TAP_OPT_SERVICE_NAME:
        return "service_name";
    case TAP_OPT_ACCESS_LOG:
        return "access_log";
    case TAP_OPT_WORKERS:
        return "workers";
    default:
        return NULL;
    }
}

int
main(int argc, char **argv)
{
    tap_main_flag_t *flags;
    tap_conf_t cf;
    const char *file;
    char *err, *eq;
    size_t nflags, i;
    int opt, test, items, version, rc;

    file = NULL;
    err = NULL;
    test = items = version = 0;
    nflags = 0;
    rc = TAP_EXIT_USAGE;
    memset(&cf, 0, sizeof(cf));

    flags = calloc((size_t)argc + 1, sizeof(*flags));
    if (flags == NULL) {
        fprintf(stderr, "infertap: out of memory\n");
        return TAP_EXIT_CONFIG;
    }

    while ((opt = getopt_long(argc, argv, "c:tTVh", tap_main_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            file = optarg;
            break;
        case 't':
            test = 1;
            break;
        case 'T':
            items = 1;
            break;
        case 'V':
            version = 1;
            break;
        case 'h':
            tap_main_usage(stdout);
            rc = 0;
            goto done;
        case TAP_OPT_SET:
            eq = strchr(optarg, '=');
            if (eq == NULL || eq == optarg) {
                fprintf(stderr, "infertap: --set needs KEY=VALUE, not '%s'\n", optarg);
                tap_main_usage(stderr);
                goto done;
            }
            flags[nflags].owned = strdup(optarg);
            if (flags[nflags].owned == NULL) {
                fprintf(stderr, "infertap: out of memory\n");
                goto done;
            }
            flags[nflags].owned[eq - optarg] = '\0';
            flags[nflags].key = flags[nflags].owned;
            flags[nflags].value = flags[nflags].owned + (eq - optarg) + 1;
            nflags++;
            break;
        default:
            if (tap_main_flag_key(opt) == NULL) {
                tap_main_usage(stderr); /* getopt_long has said what is wrong */
                goto done;
            }
            flags[nflags].key = tap_main_flag_key(opt);
            flags[nflags].value = optarg;
            nflags++;
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "infertap: unexpected argument '%s'\n", argv[optind]);
        tap_main_usage(stderr);
        goto done;
    }

    rc = 0;
    if (version) {
        tap_main_version();
        goto done;
    }
    if (items) {
        tap_conf_print_items(stdout);
        goto done;
    }

    rc = TAP_EXIT_CONFIG;
    tap_conf_init(&cf);

    if ((file != NULL && tap_conf_load_file(&cf, file, &err) != TAP_OK) ||
        tap_conf_load_env(&cf, &err) != TAP_OK) {
        fprintf(stderr, "infertap: %s\n", err);
        goto done;
    }
    for (i = 0; i < nflags; i++) {
        if (tap_conf_set(&cf, flags[i].key, flags[i].value, &err) != TAP_OK) {
            fprintf(stderr, "infertap: command line: %s\n", err);
            goto done;
        }
    }
    if (tap_conf_check(&cf, &err) != TAP_OK) {
        fprintf(stderr, "infertap: %s\n", err);
        goto done;
    }

    /* A file may be checked on its own; running needs somewhere to send requests. */
    if (cf.upstreams.n == 0 && !(test && file != NULL)) {
        fprintf(stderr, "infertap: no upstream configured (use --upstream URL, 'upstreams' in "
                        "the configuration file, or INFERTAP_UPSTREAMS)\n");
        goto done;
    }

    if (test) {
        if (file != NULL) {
            fprintf(stderr, "infertap: configuration %s is valid\n", file);
        } else {
            fprintf(stderr, "infertap: configuration is valid\n");
        }
        rc = 0;
        goto done;
    }

    rc = tap_run(&cf);

done:

    free(err);
    tap_conf_cleanup(&cf);
    for (i = 0; i < nflags; i++) {
        free(flags[i].owned);
    }
    free(flags);
    return rc;
}
