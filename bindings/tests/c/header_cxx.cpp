// berth.h must compile as C++ too: g++ -std=c++17 -Wall -Wextra -Werror -pedantic -fsyntax-only
#include "berth.h"

#include <cstddef>
#include <string>
#include <type_traits>

static_assert(std::is_standard_layout<berth_output>::value, "berth_output is plain data");
static_assert(std::is_trivially_copyable<berth_op_output>::value, "berth_op_output is POD");
static_assert(BERTH_OK == 0, "BERTH_OK is zero");
static_assert(sizeof(berth_status::expected) == BERTH_DIGEST_STRING_MAX, "digest buffer");

// The functions are declared with C linkage and usable from C++ as they are.
berth_result drain_once(berth_ingest *ing, berth_output *out) {
    berth_result r = berth_ingest_poll(ing, out);
    if (r == BERTH_OK && out->kind == BERTH_OUTPUT_OP) {
        berth_op_output res{};
        res.kind = BERTH_OP_OUTPUT_DONE;
        r = berth_ingest_complete(ing, 0, out->op.id, 0, &res);
    }
    return r;
}

bool same_digest(const char *a, const char *b) {
    berth_digest *x = nullptr;
    berth_digest *y = nullptr;
    bool eq = berth_digest_parse(a, &x) == BERTH_OK && berth_digest_parse(b, &y) == BERTH_OK &&
              berth_digest_equal(x, y);
    berth_digest_free(x);
    berth_digest_free(y);
    return eq;
}

bool runs_on(const char *host, const char *manifest) {
    berth_platform *want = nullptr;
    berth_platform *have = nullptr;
    bool ok = berth_platform_parse(host, &want) == BERTH_OK &&
              berth_platform_parse(manifest, &have) == BERTH_OK &&
              berth_platform_matches(want, have);
    berth_platform_free(want);
    berth_platform_free(have);
    return ok;
}

berth_result full_reference(const char *s, char *buf, size_t len) {
    berth_reference *r = nullptr;
    berth_result res = berth_reference_parse(s, &r);
    if (res == BERTH_OK) {
        res = berth_reference_to_string(r, buf, len, nullptr);
    }
    berth_reference_free(r);
    return res;
}

static_assert(std::is_trivially_copyable<berth_snapshot_info>::value, "berth_snapshot_info is POD");
static_assert(std::is_standard_layout<berth_mount>::value, "berth_mount is plain data");
static_assert(std::is_trivially_copyable<berth_snapshot_action>::value, "action is POD");
static_assert(BERTH_MOUNT_DATA_LIMIT == 4096, "one page of mount data");
static_assert(BERTH_SNAPSHOT_ACTIVE == 2, "containerd's wire value for an active snapshot");

// The snapshot tree from C++: a C++ function as the list callback (it must not throw).
static bool count_key(void *userdata, const char *, size_t) {
    ++*static_cast<size_t *>(userdata);
    return true;
}

size_t count_snapshots(berth_snapshot_tree *tree, const char *ns) {
    size_t n = 0;
    const char *filters[] = {"kind==committed"};
    if (berth_snapshot_list(tree, ns, filters, 1, count_key, &n) != BERTH_OK) {
        return 0;
    }
    return n;
}

// The last option of a snapshot's first mount (an overlay's lowerdir=), copied before the list
// that owns it is freed.
std::string last_option(berth_snapshot_tree *tree, const char *key) {
    berth_mounts *mounts = nullptr;
    std::string out;
    if (berth_snapshot_mounts(tree, "default", key, &mounts) == BERTH_OK) {
        berth_mount m{};
        if (berth_mounts_get(mounts, 0, &m) == BERTH_OK && m.options_len > 0) {
            out = m.options[m.options_len - 1];
        }
    }
    berth_mounts_free(mounts);
    return out;
}
