/*
 * standalone.c: a main() for fuzz targets in builds without libFuzzer.
 *
 * It runs LLVMFuzzerTestOneInput once over each file named on the command
 * line, so that the corpus of every target is replayed by `make check` (under
 * ASan and UBSan in the sanitizer build) even where no fuzzer is linked.
 */

#include "config.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int main(int argc, char **argv);


int
main(int argc, char **argv)
{
    FILE     *f;
    uint8_t  *buf;
    long      len;
    int       i, rc;

    rc = 0;

    for (i = 1; i < argc; i++) {
        buf = NULL;
        f = fopen(argv[i], "rb");
        if (f == NULL || fseek(f, 0, SEEK_END) != 0 || (len = ftell(f)) < 0
            || fseek(f, 0, SEEK_SET) != 0 || (buf = malloc(len ? len : 1)) == NULL
            || fread(buf, 1, len, f) != (size_t) len)
        {
            fprintf(stderr, "standalone: cannot read %s\n", argv[i]);
            rc = 1;

        } else {
            LLVMFuzzerTestOneInput(buf, len);
        }

        free(buf);
        if (f != NULL) {
            fclose(f);
        }
    }

    return rc;
}
