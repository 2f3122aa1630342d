/* The check macros every C test of the ABI uses: count checks and failures, report each
 * failure with its file and line, and let main() print a summary with check_summary(). */
#ifndef BERTH_TEST_CHECK_H
#define BERTH_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"

static int checks = 0;
static int failures = 0;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            failures++;                                                                \
        }                                                                              \
    } while (0)

/* A check the rest of a test depends on: stop the program if it fails. */
#define REQUIRE(cond)                                                                  \
    do {                                                                               \
        checks++;                                                                      \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: requirement failed: %s\n", __FILE__, __LINE__,     \
                    #cond);                                                            \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

#define CHECK_RESULT(expr, want)                                                       \
    do {                                                                               \
        berth_result got_ = (expr);                                                    \
        checks++;                                                                      \
        if (got_ != (want)) {                                                          \
            fprintf(stderr, "%s:%d: %s gave %s, want %s\n", __FILE__, __LINE__, #expr, \
                    berth_result_name(got_), berth_result_name(want));                 \
            failures++;                                                                \
        }                                                                              \
    } while (0)

#define CHECK_STR(got, want)                                                           \
    do {                                                                               \
        checks++;                                                                      \
        if (strcmp((got), (want)) != 0) {                                              \
            fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__, __LINE__,  \
                    #got, (got), (want));                                              \
            failures++;                                                                \
        }                                                                              \
    } while (0)

/* Prints "<name>: N checks, M failed" and returns the exit code for main(). */
static inline int check_summary(const char *name) {
    printf("%s: %d checks, %d failed\n", name, checks, failures);
    return failures == 0 ? 0 : 1;
}

#endif
