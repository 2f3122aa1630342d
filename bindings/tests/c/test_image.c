/* Image references and platforms through the C ABI: normalisation, the parts of a reference,
 * buffer sizes, platform matching, and every NULL and bad input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"
#include "check.h"

typedef berth_result (*accessor)(const berth_reference *, char *, size_t, size_t *);

static const accessor ACCESSORS[] = {
    berth_reference_to_string, berth_reference_domain, berth_reference_path,
    berth_reference_tag,       berth_reference_digest, berth_reference_familiar,
};
enum { N_ACCESSORS = sizeof ACCESSORS / sizeof ACCESSORS[0] };

#define DIGEST "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

struct ref_case {
    const char *input;
    const char *want[N_ACCESSORS]; /* to_string, domain, path, tag, digest, familiar */
};

static const struct ref_case REF_CASES[] = {
    {"busybox",
     {"docker.io/library/busybox:latest", "docker.io", "library/busybox", "latest", "",
      "busybox:latest"}},
    {"docker.io/library/busybox:1.36",
     {"docker.io/library/busybox:1.36", "docker.io", "library/busybox", "1.36", "",
      "busybox:1.36"}},
    {"index.docker.io/user/app",
     {"docker.io/user/app:latest", "docker.io", "user/app", "latest", "", "user/app:latest"}},
    {"localhost:5000/x/y:tag",
     {"localhost:5000/x/y:tag", "localhost:5000", "x/y", "tag", "", "localhost:5000/x/y:tag"}},
    {"127.0.0.1:5000/ns/app",
     {"127.0.0.1:5000/ns/app:latest", "127.0.0.1:5000", "ns/app", "latest", "",
      "127.0.0.1:5000/ns/app:latest"}},
    {"busybox@" DIGEST,
     {"docker.io/library/busybox@" DIGEST, "docker.io", "library/busybox", "", DIGEST,
      "busybox@" DIGEST}},
    {"registry.example.com:443/a/b:v1@" DIGEST,
     {"registry.example.com:443/a/b:v1@" DIGEST, "registry.example.com:443", "a/b", "v1",
      DIGEST, "registry.example.com:443/a/b:v1@" DIGEST}},
};

static void test_reference_normalisation(void) {
    for (size_t i = 0; i < sizeof REF_CASES / sizeof REF_CASES[0]; i++) {
        const struct ref_case *c = &REF_CASES[i];
        berth_reference *r = NULL;
        CHECK_RESULT(berth_reference_parse(c->input, &r), BERTH_OK);
        CHECK(r != NULL);
        if (r == NULL) {
            continue;
        }
        for (size_t a = 0; a < N_ACCESSORS; a++) {
            char buf[512];
            size_t written = 12345;
            memset(buf, 'x', sizeof buf);
            CHECK_RESULT(ACCESSORS[a](r, buf, sizeof buf, &written), BERTH_OK);
            CHECK_STR(buf, c->want[a]);
            CHECK(written == strlen(c->want[a]));
            /* `written` is optional */
            CHECK_RESULT(ACCESSORS[a](r, buf, sizeof buf, NULL), BERTH_OK);
        }
        berth_reference_free(r);
    }
}

static void test_bad_references(void) {
    const char *bad[] = {
        "",
        "Busybox",                /* uppercase path */
        "a//b",                   /* empty path component */
        "busybox:",               /* empty tag */
        "busybox:-x",             /* tag starts with '-' */
        "busybox@sha256:abc",     /* short digest */
        "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
        "foo_bar.com/x",          /* bad domain */
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* an image id */
        "busybox:\xff",           /* not UTF-8 */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        berth_reference *r = (berth_reference *)&r; /* garbage: must be cleared */
        CHECK_RESULT(berth_reference_parse(bad[i], &r), BERTH_ERR_INVALID);
        CHECK(r == NULL);
    }
}

static void test_reference_buffers(void) {
    berth_reference *r = NULL;
    CHECK_RESULT(berth_reference_parse("busybox", &r), BERTH_OK);
    const char *full = "docker.io/library/busybox:latest";

    /* size query */
    size_t written = 0;
    CHECK_RESULT(berth_reference_to_string(r, NULL, 0, &written), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == strlen(full));

    /* one byte short (no room for the NUL): nothing is copied */
    char small[32];
    memset(small, 'x', sizeof small);
    written = 0;
    CHECK_RESULT(berth_reference_to_string(r, small, sizeof small, &written),
                 BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == 32);
    CHECK(small[0] == 'x' && small[31] == 'x');

    /* exactly enough */
    char exact[33];
    CHECK_RESULT(berth_reference_to_string(r, exact, sizeof exact, &written), BERTH_OK);
    CHECK_STR(exact, full);

    /* every accessor follows the same rule */
    for (size_t a = 0; a < N_ACCESSORS; a++) {
        char tiny[2];
        memset(tiny, 'x', sizeof tiny);
        size_t need = 0;
        berth_result res = ACCESSORS[a](r, tiny, sizeof tiny, &need);
        if (need + 1 > sizeof tiny) {
            CHECK_RESULT(res, BERTH_ERR_BUFFER_TOO_SMALL);
            CHECK(tiny[0] == 'x' && tiny[1] == 'x');
        } else {
            CHECK_RESULT(res, BERTH_OK);
        }
        CHECK_RESULT(ACCESSORS[a](r, NULL, 8, &need), BERTH_ERR_NULL);
    }

    /* an empty text (no digest) still needs its NUL */
    written = 99;
    CHECK_RESULT(berth_reference_digest(r, NULL, 0, &written), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == 0);
    char one[1] = {'x'};
    CHECK_RESULT(berth_reference_digest(r, one, sizeof one, &written), BERTH_OK);
    CHECK(one[0] == '\0' && written == 0);

    /* a digest fits BERTH_DIGEST_STRING_MAX */
    berth_reference *d = NULL;
    CHECK_RESULT(berth_reference_parse("busybox@" DIGEST, &d), BERTH_OK);
    char dbuf[BERTH_DIGEST_STRING_MAX];
    CHECK_RESULT(berth_reference_digest(d, dbuf, sizeof dbuf, &written), BERTH_OK);
    CHECK_STR(dbuf, DIGEST);
    berth_reference_free(d);

    berth_reference_free(r);
}

static berth_platform *platform(const char *s) {
    berth_platform *p = NULL;
    CHECK_RESULT(berth_platform_parse(s, &p), BERTH_OK);
    CHECK(p != NULL);
    return p;
}

static void test_platform_normalisation(void) {
    const char *cases[][2] = {
        {"linux/arm64/v8", "linux/arm64/v8"},
        {"linux/aarch64/8", "linux/arm64/v8"},
        {"linux/aarch64/v8", "linux/arm64/v8"},
        {"linux/aarch64", "linux/arm64"},
        {"linux/x86_64", "linux/amd64"},
        {"Linux/AMD64", "linux/amd64"},
        {"linux/armhf", "linux/arm"}, /* v7, arm's default, is left out */
        {"linux/arm", "linux/arm"},
        {"linux/arm/7", "linux/arm/v7"},
        {"linux/i386", "linux/386"},
        {"macos/arm64", "darwin/arm64"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        berth_platform *p = platform(cases[i][0]);
        if (p == NULL) {
            continue;
        }
        char buf[64];
        size_t written = 0;
        CHECK_RESULT(berth_platform_to_string(p, buf, sizeof buf, &written), BERTH_OK);
        CHECK_STR(buf, cases[i][1]);
        CHECK(written == strlen(cases[i][1]));
        berth_platform_free(p);
    }

    /* buffers: size query, one byte short, NULL with a length */
    berth_platform *p = platform("linux/arm64/v8");
    size_t written = 0;
    CHECK_RESULT(berth_platform_to_string(p, NULL, 0, &written), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == strlen("linux/arm64/v8"));
    char small[14];
    memset(small, 'x', sizeof small);
    CHECK_RESULT(berth_platform_to_string(p, small, sizeof small, NULL),
                 BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(small[0] == 'x' && small[13] == 'x');
    CHECK_RESULT(berth_platform_to_string(p, NULL, 8, &written), BERTH_ERR_NULL);
    berth_platform_free(p);

    const char *bad[] = {"", "linux", "arm64", "linux/*", "*", "linux//v8", "/arm64",
                         "linux/arm64/v8/x", "linux/arm 64", "linux/\xff"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        berth_platform *q = (berth_platform *)&q; /* garbage: must be cleared */
        CHECK_RESULT(berth_platform_parse(bad[i], &q), BERTH_ERR_INVALID);
        CHECK(q == NULL);
    }
}

static void test_platform_matching(void) {
    struct {
        const char *want, *have;
        bool match;
    } cases[] = {
        {"linux/arm64", "linux/arm64/v8", true},   /* arm64 host, arm64/v8 manifest */
        {"linux/arm64/v8", "linux/arm64", true},
        {"linux/aarch64", "linux/arm64/v8", true},
        {"linux/arm64", "linux/arm/v7", true},     /* arm64 runs 32-bit arm */
        {"linux/arm64", "linux/arm/v6", true},
        {"linux/arm/v7", "linux/arm/v6", true},
        {"linux/arm/v6", "linux/arm/v7", false},
        {"linux/amd64", "linux/amd64", true},
        {"linux/amd64", "linux/386", true},
        {"linux/amd64", "linux/arm64", false},     /* amd64 does not match arm64 */
        {"linux/amd64", "linux/arm64/v8", false},
        {"linux/arm64", "linux/amd64", false},
        {"linux/386", "linux/amd64", false},
        {"linux/amd64", "windows/amd64", false},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        berth_platform *want = platform(cases[i].want);
        berth_platform *have = platform(cases[i].have);
        checks++;
        if (berth_platform_matches(want, have) != cases[i].match) {
            fprintf(stderr, "%s:%d: berth_platform_matches(%s, %s) is not %s\n", __FILE__,
                    __LINE__, cases[i].want, cases[i].have, cases[i].match ? "true" : "false");
            failures++;
        }
        berth_platform_free(want);
        berth_platform_free(have);
    }
}

static void test_nulls(void) {
    berth_reference *r = (berth_reference *)&r;
    CHECK_RESULT(berth_reference_parse(NULL, &r), BERTH_ERR_NULL);
    CHECK(r == NULL);
    CHECK_RESULT(berth_reference_parse("busybox", NULL), BERTH_ERR_NULL);
    char buf[64];
    size_t written = 0;
    for (size_t a = 0; a < N_ACCESSORS; a++) {
        CHECK_RESULT(ACCESSORS[a](NULL, buf, sizeof buf, &written), BERTH_ERR_NULL);
    }
    berth_reference_free(NULL); /* no-op */

    berth_platform *p = (berth_platform *)&p;
    CHECK_RESULT(berth_platform_parse(NULL, &p), BERTH_ERR_NULL);
    CHECK(p == NULL);
    CHECK_RESULT(berth_platform_parse("linux/amd64", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_platform_to_string(NULL, buf, sizeof buf, &written), BERTH_ERR_NULL);
    p = platform("linux/amd64");
    CHECK(!berth_platform_matches(NULL, NULL));
    CHECK(!berth_platform_matches(p, NULL));
    CHECK(!berth_platform_matches(NULL, p));
    CHECK(berth_platform_matches(p, p));
    berth_platform_free(p);
    berth_platform_free(NULL); /* no-op */
}

int main(void) {
    test_reference_normalisation();
    test_bad_references();
    test_reference_buffers();
    test_platform_normalisation();
    test_platform_matching();
    test_nulls();
    return check_summary("test_image");
}
