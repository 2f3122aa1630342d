/* Digests through the C ABI: parse, print, hash, compare, and every NULL and bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"
#include "check.h"

static const char *EMPTY_SHA256 =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
static const char *HELLO_SHA256 = /* sha256("hello world") */
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

static void test_parse_and_print(void) {
    berth_digest *d = NULL;
    CHECK_RESULT(berth_digest_parse(EMPTY_SHA256, &d), BERTH_OK);
    CHECK(d != NULL);
    CHECK(berth_digest_algorithm(d) == BERTH_ALGORITHM_SHA256);

    char buf[BERTH_DIGEST_STRING_MAX];
    size_t written = 0;
    CHECK_RESULT(berth_digest_to_string(d, buf, sizeof buf, &written), BERTH_OK);
    CHECK(strcmp(buf, EMPTY_SHA256) == 0);
    CHECK(written == strlen(EMPTY_SHA256));

    /* `written` is optional */
    CHECK_RESULT(berth_digest_to_string(d, buf, sizeof buf, NULL), BERTH_OK);

    /* size query, and a buffer one byte short (no room for the NUL): nothing is copied */
    written = 0;
    CHECK_RESULT(berth_digest_to_string(d, NULL, 0, &written), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == 71);
    char small[71];
    memset(small, 'x', sizeof small);
    CHECK_RESULT(berth_digest_to_string(d, small, sizeof small, &written),
                 BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x' && small[70] == 'x');
    CHECK_RESULT(berth_digest_to_string(d, NULL, 8, &written), BERTH_ERR_NULL);
    berth_digest_free(d);

    /* sha512, the longest digest string, fits BERTH_DIGEST_STRING_MAX exactly */
    char long_digest[BERTH_DIGEST_STRING_MAX];
    memcpy(long_digest, "sha512:", 7);
    memset(long_digest + 7, 'a', 128);
    long_digest[135] = '\0';
    CHECK_RESULT(berth_digest_parse(long_digest, &d), BERTH_OK);
    CHECK(berth_digest_algorithm(d) == BERTH_ALGORITHM_SHA512);
    CHECK_RESULT(berth_digest_to_string(d, buf, sizeof buf, &written), BERTH_OK);
    CHECK(written == BERTH_DIGEST_STRING_MAX - 1);
    CHECK(strcmp(buf, long_digest) == 0);
    berth_digest_free(d);
}

static void test_bad_strings(void) {
    const char *bad[] = {
        "",
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* no prefix */
        "md5:d41d8cd98f00b204e9800998ecf8427e",                             /* algorithm */
        "sha256:e3b0",                                                      /* length */
        "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855", /* case */
        "sha256:g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* hex */
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 ",
        "sha256:\xff\xfe",                                                  /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        berth_digest *d = (berth_digest *)&d; /* garbage: must be cleared */
        CHECK_RESULT(berth_digest_parse(bad[i], &d), BERTH_ERR_INVALID);
        CHECK(d == NULL);
    }
}

static void test_hash_and_compare(void) {
    berth_digest *empty = NULL, *empty2 = NULL, *hello = NULL, *parsed = NULL;
    CHECK_RESULT(berth_digest_sha256(NULL, 0, &empty), BERTH_OK);
    CHECK_RESULT(berth_digest_parse(EMPTY_SHA256, &empty2), BERTH_OK);
    CHECK(berth_digest_equal(empty, empty2));

    const char *msg = "hello world";
    CHECK_RESULT(berth_digest_sha256((const uint8_t *)msg, strlen(msg), &hello), BERTH_OK);
    CHECK_RESULT(berth_digest_parse(HELLO_SHA256, &parsed), BERTH_OK);
    CHECK(berth_digest_equal(hello, parsed));
    CHECK(!berth_digest_equal(hello, empty));
    CHECK(berth_digest_equal(hello, hello));

    berth_digest_free(empty);
    berth_digest_free(empty2);
    berth_digest_free(hello);
    berth_digest_free(parsed);
}

static void test_nulls(void) {
    berth_digest *d = NULL;
    CHECK_RESULT(berth_digest_parse(NULL, &d), BERTH_ERR_NULL);
    CHECK(d == NULL);
    CHECK_RESULT(berth_digest_parse(EMPTY_SHA256, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_digest_sha256(NULL, 3, &d), BERTH_ERR_NULL);
    CHECK(d == NULL);
    CHECK_RESULT(berth_digest_sha256((const uint8_t *)"abc", 3, NULL), BERTH_ERR_NULL);

    char buf[BERTH_DIGEST_STRING_MAX];
    CHECK_RESULT(berth_digest_to_string(NULL, buf, sizeof buf, NULL), BERTH_ERR_NULL);
    CHECK(berth_digest_algorithm(NULL) == BERTH_ALGORITHM_UNKNOWN);
    CHECK(!berth_digest_equal(NULL, NULL));

    CHECK_RESULT(berth_digest_parse(EMPTY_SHA256, &d), BERTH_OK);
    CHECK(!berth_digest_equal(d, NULL));
    CHECK(!berth_digest_equal(NULL, d));
    berth_digest_free(d);
    berth_digest_free(NULL); /* no-op */
}

static void test_result_names(void) {
    CHECK(strcmp(berth_result_name(BERTH_OK), "BERTH_OK") == 0);
    CHECK(strcmp(berth_result_name(BERTH_ERR_DIGEST_MISMATCH), "BERTH_ERR_DIGEST_MISMATCH") == 0);
    CHECK(strcmp(berth_result_name(BERTH_ERR_PANIC), "BERTH_ERR_PANIC") == 0);
    CHECK(strcmp(berth_result_name(12345), "BERTH_ERR_UNKNOWN_CODE") == 0);
}

int main(void) {
    test_parse_and_print();
    test_bad_strings();
    test_hash_and_compare();
    test_nulls();
    test_result_names();
    return check_summary("test_digest");
}
