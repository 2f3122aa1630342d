/*
 * The snapshot tree driven from C: containerd's overlayfs and native snapshotters, with a small
 * in-memory "disk" that carries out the actions each mutation returns (directories in a flat
 * table, each with an owner), so the tests check what the host ends up with, not only what
 * the library says. Every refused call is checked to change nothing (the saved JSON before and
 * after is byte for byte equal). Run under ASan/UBSan with leak detection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"
#include "check.h"

#define ROOT "/var/lib/berth/io.containerd.snapshotter.v1.overlayfs"
#define NATIVE_ROOT "/var/lib/berth/io.containerd.snapshotter.v1.native"
#define NS "default"

static const uint64_t NOW = 1700000000000000000ull;

/* ---- helpers ------------------------------------------------------------------------------ */

static char *dup_s(const char *s) {
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    REQUIRE(p != NULL);
    memcpy(p, s, n + 1);
    return p;
}

/* Compares two strings that may be NULL, reporting `what` on a mismatch. */
static void expect_str(int line, const char *what, const char *got, const char *want) {
    checks++;
    if ((got == NULL) != (want == NULL) || (got != NULL && strcmp(got, want) != 0)) {
        fprintf(stderr, "%s:%d: %s is %s%s%s, want %s%s%s\n", __FILE__, line, what,
                got ? "\"" : "", got ? got : "NULL", got ? "\"" : "", want ? "\"" : "",
                want ? want : "NULL", want ? "\"" : "");
        failures++;
    }
}
#define EXPECT_STR(what, got, want) expect_str(__LINE__, (what), (got), (want))

static berth_snapshot_tree *new_tree(uint32_t snapshotter, const char *root) {
    berth_snapshot_tree *t = NULL;
    REQUIRE(berth_snapshot_tree_new(snapshotter, root, &t) == BERTH_OK);
    REQUIRE(t != NULL);
    return t;
}

/* The tree as JSON, malloc'd. */
static char *save(const berth_snapshot_tree *t) {
    size_t need = 0;
    REQUIRE(berth_snapshot_tree_save(t, NULL, 0, &need) == BERTH_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    REQUIRE(buf != NULL);
    size_t written = 0;
    REQUIRE(berth_snapshot_tree_save(t, buf, need + 1, &written) == BERTH_OK);
    REQUIRE(written == need && strlen(buf) == need);
    return buf;
}

/* The tree's last error text, in a static buffer. */
static const char *last_error(const berth_snapshot_tree *t) {
    static char buf[1024];
    size_t written = 0;
    REQUIRE(berth_snapshot_tree_last_error(t, buf, sizeof buf, &written) == BERTH_OK);
    REQUIRE(written == strlen(buf));
    return buf;
}

/* A refused call: its code, a message with `needle`, and the tree unchanged since `before`. */
#define CHECK_REFUSED(t, before, expr, want, needle)                                         \
    do {                                                                                     \
        CHECK_RESULT((expr), (want));                                                        \
        const char *err_ = last_error(t);                                                    \
        checks++;                                                                            \
        if (strstr(err_, (needle)) == NULL) {                                                \
            fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n", __FILE__, \
                    __LINE__, err_, (needle));                                               \
            failures++;                                                                      \
        }                                                                                    \
        char *after_ = save(t);                                                              \
        checks++;                                                                            \
        if (strcmp(after_, (before)) != 0) {                                                 \
            fprintf(stderr, "%s:%d: %s changed the tree\n", __FILE__, __LINE__, #expr);      \
            failures++;                                                                      \
        }                                                                                    \
        free(after_);                                                                        \
    } while (0)

static berth_snapshot_info stat_of(berth_snapshot_tree *t, const char *ns, const char *key) {
    berth_snapshot_info info;
    memset(&info, 0, sizeof info);
    CHECK_RESULT(berth_snapshot_stat(t, ns, key, &info), BERTH_OK);
    return info;
}

static berth_snapshot_kind kind_of(berth_snapshot_tree *t, const char *key) {
    return stat_of(t, NS, key).kind;
}

/* Commits `key` as `name` with no parent bookkeeping of its own. */
static void commit(berth_snapshot_tree *t, const char *name, const char *key) {
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NS, name, key, 0, 0), BERTH_OK);
}

/* A committed chain l1 <- l2 <- ... <- ln in namespace `ns` (x<i> prepared, committed as l<i>).
 * The actions are not asked for: the out-parameter is optional. */
static void chain(berth_snapshot_tree *t, const char *ns, int n) {
    for (int i = 1; i <= n; i++) {
        char key[32], name[32], parent[32];
        snprintf(key, sizeof key, "x%d", i);
        snprintf(name, sizeof name, "l%d", i);
        snprintf(parent, sizeof parent, "l%d", i - 1);
        REQUIRE(berth_snapshot_prepare(t, NOW, ns, key, i > 1 ? parent : NULL, NULL) ==
                BERTH_OK);
        REQUIRE(berth_snapshot_commit(t, NOW, ns, name, key, 0, 0) == BERTH_OK);
    }
}

static berth_mounts *mounts_of(berth_snapshot_tree *t, const char *key) {
    berth_mounts *m = NULL;
    CHECK_RESULT(berth_snapshot_mounts(t, NS, key, &m), BERTH_OK);
    REQUIRE(m != NULL);
    return m;
}

static berth_mount mount_at(const berth_mounts *m, size_t i) {
    berth_mount out;
    memset(&out, 0, sizeof out);
    REQUIRE(berth_mounts_get(m, i, &out) == BERTH_OK);
    return out;
}

/* Checks a mount's type, source, empty target, and its options exactly (NULL-terminated list). */
static void expect_mount(int line, const berth_mount *m, const char *type, const char *source,
                         const char *target, const char *const *options) {
    expect_str(line, "mount type", m->type, type);
    expect_str(line, "mount source", m->source, source);
    expect_str(line, "mount target", m->target, target);
    checks++;
    if (m->type_len != strlen(type) || m->source_len != strlen(source) ||
        m->target_len != strlen(target) || m->data_len != strlen(m->data)) {
        fprintf(stderr, "%s:%d: a mount length is wrong\n", __FILE__, line);
        failures++;
    }
    size_t n = 0;
    while (options[n] != NULL) n++;
    checks++;
    if (m->options_len != n) {
        fprintf(stderr, "%s:%d: mount has %zu options, want %zu\n", __FILE__, line,
                m->options_len, n);
        failures++;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        char what[32];
        snprintf(what, sizeof what, "option %zu", i);
        expect_str(line, what, m->options[i], options[i]);
    }
    checks++;
    if (m->options[n] != NULL) {
        fprintf(stderr, "%s:%d: the options are not NULL-terminated\n", __FILE__, line);
        failures++;
    }
}
#define EXPECT_MOUNT(m, type, source, target, ...)                                            \
    do {                                                                                     \
        const char *const opts_[] = {__VA_ARGS__, NULL};                                     \
        expect_mount(__LINE__, (m), (type), (source), (target), opts_);                      \
    } while (0)

static void expect_action(int line, const berth_snapshot_actions *a, size_t i,
                          berth_snapshot_action_kind kind, const char *path, const char *to,
                          const char *like, uint32_t mode) {
    berth_snapshot_action act;
    memset(&act, 0xff, sizeof act);
    checks++;
    if (berth_snapshot_actions_get(a, i, &act) != BERTH_OK) {
        fprintf(stderr, "%s:%d: no action %zu\n", __FILE__, line, i);
        failures++;
        return;
    }
    checks++;
    if (act.kind != kind || act.mode != mode) {
        fprintf(stderr, "%s:%d: action %zu is kind %d mode %o, want kind %d mode %o\n",
                __FILE__, line, i, (int)act.kind, act.mode, (int)kind, mode);
        failures++;
    }
    expect_str(line, "action path", act.path, path);
    expect_str(line, "action to", act.to, to);
    expect_str(line, "action like", act.like, like);
    checks++;
    if (act.path_len != (path ? strlen(path) : 0) || act.to_len != (to ? strlen(to) : 0) ||
        act.like_len != (like ? strlen(like) : 0)) {
        fprintf(stderr, "%s:%d: action %zu: a length is wrong\n", __FILE__, line, i);
        failures++;
    }
}
#define EXPECT_ACTION(a, i, kind, path, to, like, mode)                                       \
    expect_action(__LINE__, (a), (i), BERTH_SNAPSHOT_ACTION_##kind, (path), (to), (like), (mode))

/* ---- the in-memory disk: what a host does with the actions -------------------------------- */

#define MAX_DIRS 256

typedef struct {
    char path[160];
    int owner;
} dir;

typedef struct {
    dir dirs[MAX_DIRS];
    size_t n;
} disk;

static disk *disk_new(void) {
    disk *d = calloc(1, sizeof *d);
    REQUIRE(d != NULL);
    snprintf(d->dirs[0].path, sizeof d->dirs[0].path, "snapshots");
    d->n = 1;
    return d;
}

static dir *disk_find(disk *d, const char *path) {
    for (size_t i = 0; i < d->n; i++) {
        if (strcmp(d->dirs[i].path, path) == 0) return &d->dirs[i];
    }
    return NULL;
}

static int disk_has(disk *d, const char *path) { return disk_find(d, path) != NULL; }

/* True if `path` is `top` or below it. */
static int under(const char *path, const char *top) {
    size_t n = strlen(top);
    return strncmp(path, top, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int parent_exists(disk *d, const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return 1; /* the root */
    char parent[160];
    snprintf(parent, sizeof parent, "%.*s", (int)(slash - path), path);
    return disk_has(d, parent);
}

static int disk_add(disk *d, const char *path, int owner) {
    if (d->n == MAX_DIRS || disk_has(d, path) || !parent_exists(d, path)) return -1;
    snprintf(d->dirs[d->n].path, sizeof d->dirs[d->n].path, "%s", path);
    d->dirs[d->n].owner = owner;
    d->n++;
    return 0;
}

static void disk_remove_all(disk *d, const char *path) {
    size_t w = 0;
    for (size_t i = 0; i < d->n; i++) {
        if (!under(d->dirs[i].path, path)) d->dirs[w++] = d->dirs[i];
    }
    d->n = w;
}

/* Performs action `act` as a host would; -1 if it cannot be done (a host bug or a bad action). */
static int disk_apply_one(disk *d, const berth_snapshot_action *act) {
    switch (act->kind) {
    case BERTH_SNAPSHOT_ACTION_MKDIR:
        return disk_add(d, act->path, 0);
    case BERTH_SNAPSHOT_ACTION_COPY_OWNER: {
        dir *p = disk_find(d, act->path);
        dir *like = disk_find(d, act->like);
        if (p == NULL || like == NULL) return -1;
        p->owner = like->owner;
        return 0;
    }
    case BERTH_SNAPSHOT_ACTION_COPY_TREE: {
        if (!disk_has(d, act->path) || !disk_has(d, act->to)) return -1;
        size_t n = d->n, from_len = strlen(act->path);
        for (size_t i = 0; i < n; i++) {
            if (under(d->dirs[i].path, act->path) && d->dirs[i].path[from_len] == '/') {
                char to[160];
                snprintf(to, sizeof to, "%s%s", act->to, d->dirs[i].path + from_len);
                if (disk_add(d, to, d->dirs[i].owner) != 0) return -1;
            }
        }
        return 0;
    }
    case BERTH_SNAPSHOT_ACTION_RENAME: {
        if (!disk_has(d, act->path) || disk_has(d, act->to) || !parent_exists(d, act->to))
            return -1;
        size_t from_len = strlen(act->path);
        for (size_t i = 0; i < d->n; i++) {
            if (under(d->dirs[i].path, act->path)) {
                char to[160];
                snprintf(to, sizeof to, "%s%s", act->to, d->dirs[i].path + from_len);
                snprintf(d->dirs[i].path, sizeof d->dirs[i].path, "%s", to);
            }
        }
        return 0;
    }
    case BERTH_SNAPSHOT_ACTION_REMOVE_ALL:
        disk_remove_all(d, act->path);
        return 0;
    default:
        return -1;
    }
}

/* Carries out the actions in order, failing on purpose at index `fail_at` (SIZE_MAX: never).
 * Returns how many were done. */
static size_t disk_apply(disk *d, const berth_snapshot_actions *a, size_t fail_at) {
    size_t n = berth_snapshot_actions_len(a);
    for (size_t i = 0; i < n; i++) {
        berth_snapshot_action act;
        REQUIRE(berth_snapshot_actions_get(a, i, &act) == BERTH_OK);
        if (i == fail_at) return i;
        if (disk_apply_one(d, &act) != 0) {
            fprintf(stderr, "%s:%d: action %zu (%s) cannot be carried out\n", __FILE__,
                    __LINE__, i, act.path);
            failures++;
            return i;
        }
    }
    return n;
}

/* The entry names of "snapshots/" on the disk, as a host lists them for cleanup. */
static size_t disk_entries(disk *d, const char **out, size_t max) {
    size_t n = 0;
    for (size_t i = 0; i < d->n && n < max; i++) {
        const char *p = d->dirs[i].path;
        if (strncmp(p, "snapshots/", 10) == 0 && strchr(p + 10, '/') == NULL) out[n++] = p + 10;
    }
    return n;
}

/* The absolute path `opt` names after `prefix=`, made relative to ROOT, is on the disk. */
static void expect_on_disk(int line, disk *d, const char *abs) {
    size_t n = strlen(ROOT);
    checks++;
    if (strncmp(abs, ROOT "/", n + 1) != 0 || !disk_has(d, abs + n + 1)) {
        fprintf(stderr, "%s:%d: %s is not on the disk\n", __FILE__, line, abs);
        failures++;
    }
}

/* ---- tests -------------------------------------------------------------------------------- */

/* A base layer prepared (directories made by the host), committed, a container on top with an
 * overlay, a view of one parent with a ro bind, deeper views, remove. */
static void test_base_layer_and_container(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    CHECK(berth_snapshot_tree_snapshotter(t) == BERTH_SNAPSHOTTER_OVERLAYFS);
    disk *d = disk_new();

    /* prepare the base layer: make snapshots/new-1/{fs,work}, then rename it into place */
    berth_snapshot_actions *a = (berth_snapshot_actions *)&a; /* garbage: must be replaced */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "extract-1", NULL, &a), BERTH_OK);
    REQUIRE(a != NULL);
    CHECK(berth_snapshot_actions_len(a) == 4);
    EXPECT_ACTION(a, 0, MKDIR, "snapshots/new-1", NULL, NULL, 0700);
    EXPECT_ACTION(a, 1, MKDIR, "snapshots/new-1/fs", NULL, NULL, 0755);
    EXPECT_ACTION(a, 2, MKDIR, "snapshots/new-1/work", NULL, NULL, 0711);
    EXPECT_ACTION(a, 3, RENAME, "snapshots/new-1", "snapshots/1", NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 4);
    berth_snapshot_actions_free(a);
    CHECK(disk_has(d, "snapshots/1/fs") && disk_has(d, "snapshots/1/work"));
    CHECK(!disk_has(d, "snapshots/new-1"));

    berth_snapshot_info info = stat_of(t, NS, "extract-1");
    EXPECT_STR("name", info.name, "extract-1");
    CHECK(info.name_len == 9);
    CHECK(info.kind == BERTH_SNAPSHOT_ACTIVE && info.id == 1);
    CHECK(info.parent == NULL && info.parent_len == 0);
    EXPECT_STR("fs_dir", info.fs_dir, "snapshots/1/fs");
    CHECK(info.fs_dir_len == strlen("snapshots/1/fs"));
    CHECK(info.created_at_ns == NOW && info.updated_at_ns == NOW);
    CHECK(info.label_count == 0 && info.usage_size == 0 && info.usage_inodes == 0);

    /* an active snapshot without a parent: a rw bind of its own fs (no fs data: flags only) */
    berth_mounts *m = mounts_of(t, "extract-1");
    CHECK(berth_mounts_len(m) == 1);
    CHECK(berth_mounts_chdir(m) == NULL);
    berth_mount mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", ROOT "/snapshots/1/fs", "", "rw", "rbind");
    EXPECT_STR("data", mt.data, "");
    expect_on_disk(__LINE__, d, mt.source);
    berth_mounts_free(m);

    /* commit it as layer-1, with the usage the host measured */
    CHECK_RESULT(berth_snapshot_commit(t, NOW + 10, NS, "layer-1", "extract-1", 4096, 3),
                 BERTH_OK);
    info = stat_of(t, NS, "layer-1");
    EXPECT_STR("name", info.name, "layer-1");
    CHECK(info.kind == BERTH_SNAPSHOT_COMMITTED && info.id == 1 && info.parent == NULL);
    CHECK(info.created_at_ns == NOW + 10 && info.updated_at_ns == NOW + 10);
    CHECK(info.usage_size == 4096 && info.usage_inodes == 3);
    CHECK_RESULT(berth_snapshot_stat(t, NS, "extract-1", &info), BERTH_ERR_NOT_FOUND);

    /* a container's rootfs on top: an overlay; the new upper dir takes the parent's owner */
    disk_find(d, "snapshots/1/fs")->owner = 1000; /* as if the image's files are uid 1000's */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW + 20, NS, "c1", "layer-1", &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 5);
    EXPECT_ACTION(a, 0, MKDIR, "snapshots/new-2", NULL, NULL, 0700);
    EXPECT_ACTION(a, 1, MKDIR, "snapshots/new-2/fs", NULL, NULL, 0755);
    EXPECT_ACTION(a, 2, MKDIR, "snapshots/new-2/work", NULL, NULL, 0711);
    EXPECT_ACTION(a, 3, COPY_OWNER, "snapshots/new-2/fs", NULL, "snapshots/1/fs", 0);
    EXPECT_ACTION(a, 4, RENAME, "snapshots/new-2", "snapshots/2", NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 5);
    berth_snapshot_actions_free(a);
    CHECK(disk_find(d, "snapshots/2/fs")->owner == 1000);

    info = stat_of(t, NS, "c1");
    CHECK(info.kind == BERTH_SNAPSHOT_ACTIVE && info.id == 2);
    EXPECT_STR("parent", info.parent, "layer-1");
    CHECK(info.parent_len == 7);

    m = mounts_of(t, "c1");
    CHECK(berth_mounts_len(m) == 1);
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "overlay", "overlay", "", "index=off",
                 "workdir=" ROOT "/snapshots/2/work", "upperdir=" ROOT "/snapshots/2/fs",
                 "lowerdir=" ROOT "/snapshots/1/fs");
    EXPECT_STR("data", mt.data,
               "index=off,workdir=" ROOT "/snapshots/2/work,upperdir=" ROOT
               "/snapshots/2/fs,lowerdir=" ROOT "/snapshots/1/fs");
    /* every directory the overlay names exists after the host carried out the actions */
    expect_on_disk(__LINE__, d, mt.options[1] + strlen("workdir="));
    expect_on_disk(__LINE__, d, mt.options[2] + strlen("upperdir="));
    expect_on_disk(__LINE__, d, mt.options[3] + strlen("lowerdir="));
    berth_mounts_free(m);

    /* planned at a target: the target filled in, nothing else changes for a short chain */
    CHECK_RESULT(berth_snapshot_plan_mounts(t, NS, "c1", "/run/berth/c1/rootfs", &m), BERTH_OK);
    CHECK(berth_mounts_chdir(m) == NULL);
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "overlay", "overlay", "/run/berth/c1/rootfs", "index=off",
                 "workdir=" ROOT "/snapshots/2/work", "upperdir=" ROOT "/snapshots/2/fs",
                 "lowerdir=" ROOT "/snapshots/1/fs");
    berth_mounts_free(m);

    /* a view with one parent: a read-only bind of the parent's fs, no work dir */
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v1", "layer-1", &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 4);
    EXPECT_ACTION(a, 0, MKDIR, "snapshots/new-3", NULL, NULL, 0700);
    EXPECT_ACTION(a, 1, MKDIR, "snapshots/new-3/fs", NULL, NULL, 0755);
    EXPECT_ACTION(a, 2, COPY_OWNER, "snapshots/new-3/fs", NULL, "snapshots/1/fs", 0);
    EXPECT_ACTION(a, 3, RENAME, "snapshots/new-3", "snapshots/3", NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 4);
    CHECK(!disk_has(d, "snapshots/3/work"));
    berth_snapshot_actions_free(a);
    CHECK(kind_of(t, "v1") == BERTH_SNAPSHOT_VIEW);
    m = mounts_of(t, "v1");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", ROOT "/snapshots/1/fs", "", "ro", "rbind");
    berth_mounts_free(m);

    /* a second layer: a container on it stacks both, top first; a view of both is lower-only */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "extract-2", "layer-1", NULL), BERTH_OK);
    commit(t, "layer-2", "extract-2"); /* id 4 */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "c2", "layer-2", NULL), BERTH_OK);
    m = mounts_of(t, "c2");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "overlay", "overlay", "", "index=off",
                 "workdir=" ROOT "/snapshots/5/work", "upperdir=" ROOT "/snapshots/5/fs",
                 "lowerdir=" ROOT "/snapshots/4/fs:" ROOT "/snapshots/1/fs");
    berth_mounts_free(m);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v2", "layer-2", NULL), BERTH_OK);
    m = mounts_of(t, "v2");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "overlay", "overlay", "", "index=off",
                 "lowerdir=" ROOT "/snapshots/4/fs:" ROOT "/snapshots/1/fs");
    berth_mounts_free(m);
    /* a view without a parent binds its own (empty) fs, read-only */
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v0", "", NULL), BERTH_OK);
    m = mounts_of(t, "v0");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", ROOT "/snapshots/7/fs", "", "ro", "rbind");
    berth_mounts_free(m);

    /* remove the container: the host removes its directory after persisting */
    CHECK_RESULT(berth_snapshot_remove(t, NS, "c1", &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 1);
    EXPECT_ACTION(a, 0, REMOVE_ALL, "snapshots/2", NULL, NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 1);
    berth_snapshot_actions_free(a);
    CHECK(!disk_has(d, "snapshots/2") && !disk_has(d, "snapshots/2/fs"));
    CHECK(disk_has(d, "snapshots/1/fs"));
    CHECK_RESULT(berth_snapshot_stat(t, NS, "c1", &info), BERTH_ERR_NOT_FOUND);

    free(d);
    berth_snapshot_tree_free(t);
}

/* Remove of a parent with children: FAILED_PRECONDITION, with the child named, and nothing
 * changes: not the tree, not the undo of the previous mutation. */
static void test_remove_parent_is_refused(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x", NULL, NULL), BERTH_OK);
    commit(t, "base", "x");
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "c1", "base", NULL), BERTH_OK);

    char *before = save(t);
    berth_snapshot_actions *a = (berth_snapshot_actions *)&a;
    CHECK_REFUSED(t, before, berth_snapshot_remove(t, NS, "base", &a),
                  BERTH_ERR_FAILED_PRECONDITION, "parent of 1 snapshot(s), e.g. \"c1\"");
    CHECK(a == NULL);
    CHECK(kind_of(t, "base") == BERTH_SNAPSHOT_COMMITTED);
    /* a view is a child too */
    CHECK_RESULT(berth_snapshot_remove(t, NS, "c1", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v", "base", NULL), BERTH_OK);
    free(before);
    before = save(t);
    CHECK_REFUSED(t, before, berth_snapshot_remove(t, NS, "base", NULL),
                  BERTH_ERR_FAILED_PRECONDITION, "\"v\"");
    /* the undo slot still holds the view's undo: the refused remove did not touch it */
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK_RESULT(berth_snapshot_stat(t, NS, "v", &(berth_snapshot_info){0}), BERTH_ERR_NOT_FOUND);
    /* with no children left, the parent goes */
    CHECK_RESULT(berth_snapshot_remove(t, NS, "base", NULL), BERTH_OK);
    free(before);
    berth_snapshot_tree_free(t);
}

/* Rebase: a layer unpacked without a parent gets one before its commit; the mounts follow. */
static void test_rebase(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 1); /* l1, id 1 */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x2", NULL, NULL), BERTH_OK); /* id 2 */
    berth_mounts *m = mounts_of(t, "x2");
    berth_mount mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", ROOT "/snapshots/2/fs", "", "rw", "rbind");
    berth_mounts_free(m);

    CHECK_RESULT(berth_snapshot_rebase(t, NOW + 5, NS, "x2", "l1"), BERTH_OK);
    berth_snapshot_info info = stat_of(t, NS, "x2");
    EXPECT_STR("parent", info.parent, "l1");
    CHECK(info.id == 2 && info.created_at_ns == NOW && info.updated_at_ns == NOW + 5);
    m = mounts_of(t, "x2");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "overlay", "overlay", "", "index=off",
                 "workdir=" ROOT "/snapshots/2/work", "upperdir=" ROOT "/snapshots/2/fs",
                 "lowerdir=" ROOT "/snapshots/1/fs");
    berth_mounts_free(m);
    commit(t, "l2", "x2");
    EXPECT_STR("parent", stat_of(t, NS, "l2").parent, "l1");

    /* back to no parent (NULL and "" both mean none), then undo restores the parent */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x3", "l2", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_rebase(t, NOW, NS, "x3", NULL), BERTH_OK);
    CHECK(stat_of(t, NS, "x3").parent == NULL);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    EXPECT_STR("parent", stat_of(t, NS, "x3").parent, "l2");
    CHECK_RESULT(berth_snapshot_rebase(t, NOW, NS, "x3", ""), BERTH_OK);
    CHECK(stat_of(t, NS, "x3").parent == NULL);

    /* refusals: each with its code, and nothing changes */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x4", NULL, NULL), BERTH_OK);
    char *before = save(t);
    CHECK_REFUSED(t, before, berth_snapshot_rebase(t, NOW, NS, "l2", NULL),
                  BERTH_ERR_FAILED_PRECONDITION, "only active snapshots can be rebased");
    CHECK_REFUSED(t, before, berth_snapshot_rebase(t, NOW, NS, "nope", "l1"),
                  BERTH_ERR_NOT_FOUND, "\"nope\"");
    CHECK_REFUSED(t, before, berth_snapshot_rebase(t, NOW, NS, "x3", "gone"),
                  BERTH_ERR_NOT_FOUND, "parent snapshot \"gone\"");
    CHECK_REFUSED(t, before, berth_snapshot_rebase(t, NOW, NS, "x3", "x4"), BERTH_ERR_INVALID,
                  "is active, not a committed snapshot");
    free(before);
    berth_snapshot_tree_free(t);

    berth_snapshot_tree *n = new_tree(BERTH_SNAPSHOTTER_NATIVE, NATIVE_ROOT);
    CHECK_RESULT(berth_snapshot_prepare(n, NOW, NS, "a", NULL, NULL), BERTH_OK);
    before = save(n);
    CHECK_REFUSED(n, before, berth_snapshot_rebase(n, NOW, NS, "a", NULL),
                  BERTH_ERR_FAILED_PRECONDITION, "only overlay snapshots can be rebased");
    free(before);
    berth_snapshot_tree_free(n);
}

/* The native snapshotter: a copy of the parent, binds, and a view of a parent has no dir. */
static void test_native(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_NATIVE, NATIVE_ROOT);
    CHECK(berth_snapshot_tree_snapshotter(t) == BERTH_SNAPSHOTTER_NATIVE);
    disk *d = disk_new();
    berth_snapshot_actions *a = NULL;
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x", NULL, &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 2);
    EXPECT_ACTION(a, 0, MKDIR, "snapshots/new-1", NULL, NULL, 0755);
    EXPECT_ACTION(a, 1, RENAME, "snapshots/new-1", "snapshots/1", NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 2);
    berth_snapshot_actions_free(a);
    EXPECT_STR("fs_dir", stat_of(t, NS, "x").fs_dir, "snapshots/1");
    /* the layer's content, as applying it would make */
    CHECK(disk_add(d, "snapshots/1/etc", 0) == 0 && disk_add(d, "snapshots/1/etc/ssl", 0) == 0);
    commit(t, "base", "x");

    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "c", "base", &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 3);
    EXPECT_ACTION(a, 0, MKDIR, "snapshots/new-2", NULL, NULL, 0755);
    EXPECT_ACTION(a, 1, COPY_TREE, "snapshots/1", "snapshots/new-2", NULL, 0);
    EXPECT_ACTION(a, 2, RENAME, "snapshots/new-2", "snapshots/2", NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 3);
    berth_snapshot_actions_free(a);
    CHECK(disk_has(d, "snapshots/2/etc/ssl"));
    berth_mounts *m = mounts_of(t, "c");
    berth_mount mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", NATIVE_ROOT "/snapshots/2", "", "rw", "rbind");
    berth_mounts_free(m);

    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v", "base", &a), BERTH_OK);
    CHECK(a != NULL && berth_snapshot_actions_len(a) == 0);
    berth_snapshot_action act;
    CHECK_RESULT(berth_snapshot_actions_get(a, 0, &act), BERTH_ERR_INVALID);
    berth_snapshot_actions_free(a);
    berth_snapshot_info info = stat_of(t, NS, "v");
    CHECK(info.kind == BERTH_SNAPSHOT_VIEW && info.fs_dir == NULL && info.fs_dir_len == 0);
    m = mounts_of(t, "v");
    mt = mount_at(m, 0);
    EXPECT_MOUNT(&mt, "bind", NATIVE_ROOT "/snapshots/1", "", "ro", "rbind");
    berth_mounts_free(m);
    CHECK_RESULT(berth_snapshot_remove(t, NS, "v", &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 0);
    berth_snapshot_actions_free(a);

    free(d);
    berth_snapshot_tree_free(t);
}

/* Undo of the last mutation, when the host cannot carry out the actions (or persist), and the
 * start-up cleanup of what a failed prepare left behind. */
static void test_undo_and_cleanup(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    disk *d = disk_new();
    char *empty = save(t);
    CHECK_REFUSED(t, empty, berth_snapshot_undo(t), BERTH_ERR_FAILED_PRECONDITION,
                  "nothing to undo");

    /* a prepare whose third action fails: undo, and the half-made directory stays behind */
    berth_snapshot_actions *a = NULL;
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x", NULL, &a), BERTH_OK);
    CHECK(disk_apply(d, a, 2) == 2);
    berth_snapshot_actions_free(a);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK_RESULT(berth_snapshot_stat(t, NS, "x", &(berth_snapshot_info){0}), BERTH_ERR_NOT_FOUND);
    free(empty);
    empty = save(t);
    CHECK_REFUSED(t, empty, berth_snapshot_undo(t), BERTH_ERR_FAILED_PRECONDITION,
                  "undone already");
    free(empty);
    CHECK(disk_has(d, "snapshots/new-1/fs"));

    /* ids are not given back: the next snapshot never collides with the leftover */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "x", NULL, &a), BERTH_OK);
    CHECK(stat_of(t, NS, "x").id == 2);
    CHECK(disk_apply(d, a, SIZE_MAX) == berth_snapshot_actions_len(a));
    berth_snapshot_actions_free(a);

    /* commit, undone: the active snapshot is back, the name is free */
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NS, "base", "x", 1, 1), BERTH_OK);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK(kind_of(t, "x") == BERTH_SNAPSHOT_ACTIVE);
    CHECK_RESULT(berth_snapshot_stat(t, NS, "base", &(berth_snapshot_info){0}),
                 BERTH_ERR_NOT_FOUND);
    commit(t, "base", "x");

    /* remove, undone (its persist failed): the snapshot is back with its id */
    CHECK_RESULT(berth_snapshot_remove(t, NS, "base", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK(stat_of(t, NS, "base").id == 2);

    /* start-up: the host lists snapshots/ and removes what no snapshot owns */
    CHECK(disk_add(d, "snapshots/9", 0) == 0);
    const char *entries[16];
    size_t n = disk_entries(d, entries, 16);
    CHECK(n == 3); /* new-1 (half-made), 2, 9 (never persisted) */
    CHECK_RESULT(berth_snapshot_cleanup(t, entries, n, &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 2);
    EXPECT_ACTION(a, 0, REMOVE_ALL, "snapshots/9", NULL, NULL, 0);
    EXPECT_ACTION(a, 1, REMOVE_ALL, "snapshots/new-1", NULL, NULL, 0);
    CHECK(disk_apply(d, a, SIZE_MAX) == 2);
    berth_snapshot_actions_free(a);
    n = disk_entries(d, entries, 16);
    CHECK(n == 1 && strcmp(entries[0], "2") == 0);
    CHECK_RESULT(berth_snapshot_cleanup(t, entries, n, &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 0);
    berth_snapshot_actions_free(a);
    CHECK_RESULT(berth_snapshot_cleanup(t, NULL, 0, &a), BERTH_OK);
    CHECK(berth_snapshot_actions_len(a) == 0);
    berth_snapshot_actions_free(a);

    free(d);
    berth_snapshot_tree_free(t);
}

/* Labels: set one, remove one with "", clear all; each a mutation with an undo. */
static void test_labels(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "a", NULL, NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW + 1, NS, "a", "containerd.io/gc.root", "2024"),
                 BERTH_OK);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW + 2, NS, "a", "role", "rootfs"), BERTH_OK);
    berth_snapshot_info info = stat_of(t, NS, "a");
    CHECK(info.label_count == 2 && info.created_at_ns == NOW && info.updated_at_ns == NOW + 2);

    char buf[64];
    size_t written = 0;
    CHECK_RESULT(berth_snapshot_label(t, NS, "a", "containerd.io/gc.root", buf, sizeof buf,
                                      &written),
                 BERTH_OK);
    CHECK_STR(buf, "2024");
    CHECK(written == 4);
    /* an unset label reads as empty */
    CHECK_RESULT(berth_snapshot_label(t, NS, "a", "nope", buf, sizeof buf, &written), BERTH_OK);
    CHECK_STR(buf, "");
    CHECK(written == 0);
    /* buffer rules */
    char small[4];
    memset(small, 'x', sizeof small);
    CHECK_RESULT(berth_snapshot_label(t, NS, "a", "role", small, sizeof small, &written),
                 BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == 6 && small[0] == 'x');

    /* overwrite, then remove one with "" */
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "a", "role", "base"), BERTH_OK);
    CHECK_RESULT(berth_snapshot_label(t, NS, "a", "role", buf, sizeof buf, NULL), BERTH_OK);
    CHECK_STR(buf, "base");
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "a", "role", ""), BERTH_OK);
    CHECK(stat_of(t, NS, "a").label_count == 1);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK(stat_of(t, NS, "a").label_count == 2);

    /* clear all */
    CHECK_RESULT(berth_snapshot_clear_labels(t, NOW + 9, NS, "a"), BERTH_OK);
    info = stat_of(t, NS, "a");
    CHECK(info.label_count == 0 && info.updated_at_ns == NOW + 9);
    CHECK_RESULT(berth_snapshot_undo(t), BERTH_OK);
    CHECK(stat_of(t, NS, "a").label_count == 2);

    /* refusals */
    char *before = save(t);
    CHECK_REFUSED(t, before, berth_snapshot_set_label(t, NOW, NS, "zz", "k", "v"),
                  BERTH_ERR_NOT_FOUND, "\"zz\" does not exist in namespace \"default\"");
    CHECK_REFUSED(t, before, berth_snapshot_set_label(t, NOW, NS, "a", "", "v"),
                  BERTH_ERR_INVALID, "label key must not be empty");
    char *huge = malloc(5000);
    REQUIRE(huge != NULL);
    memset(huge, 'v', 4999);
    huge[4999] = '\0';
    CHECK_REFUSED(t, before, berth_snapshot_set_label(t, NOW, NS, "a", "k", huge),
                  BERTH_ERR_INVALID, "the limit is 4096");
    free(huge);
    CHECK_REFUSED(t, before, berth_snapshot_clear_labels(t, NOW, NS, "zz"), BERTH_ERR_NOT_FOUND,
                  "\"zz\"");
    CHECK_REFUSED(t, before, berth_snapshot_label(t, NS, "zz", "k", buf, sizeof buf, NULL),
                  BERTH_ERR_NOT_FOUND, "\"zz\"");
    /* labels of a commit: none (containerd's commit takes only the labels given) */
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NS, "c", "a", 0, 0), BERTH_OK);
    CHECK(stat_of(t, NS, "c").label_count == 0);
    free(before);
    berth_snapshot_tree_free(t);
}

/* ---- list --------------------------------------------------------------------------------- */

typedef struct {
    berth_snapshot_tree *tree;
    char keys[16][32];
    berth_snapshot_kind kinds[16];
    size_t n;
    size_t stop_after; /* 0: never */
} seen;

static bool collect(void *userdata, const char *key, size_t key_len) {
    seen *s = userdata;
    checks++;
    if (strlen(key) != key_len || s->n == 16) {
        failures++;
        return false;
    }
    snprintf(s->keys[s->n], sizeof s->keys[s->n], "%s", key);
    /* calling back into the tree from the callback is allowed */
    if (s->tree != NULL) s->kinds[s->n] = stat_of(s->tree, NS, key).kind;
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

static void expect_keys(int line, berth_snapshot_tree *t, const char *const *filters,
                        size_t nfilters, const char *want) {
    seen s;
    memset(&s, 0, sizeof s);
    checks++;
    berth_result r = berth_snapshot_list(t, NS, filters, nfilters, collect, &s);
    if (r != BERTH_OK) {
        fprintf(stderr, "%s:%d: list gave %s\n", __FILE__, line, berth_result_name(r));
        failures++;
        return;
    }
    char got[256] = "";
    for (size_t i = 0; i < s.n; i++) {
        if (i) strcat(got, " ");
        strcat(got, s.keys[i]);
    }
    expect_str(line, "keys", got, want);
}
#define EXPECT_KEYS(t, want, ...)                                                             \
    do {                                                                                     \
        const char *f_[] = {__VA_ARGS__};                                                    \
        expect_keys(__LINE__, (t), f_, sizeof f_ / sizeof f_[0], (want));                   \
    } while (0)

static void test_list(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 2);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "a", "l2", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v", "l1", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "v", "role", "ro"), BERTH_OK);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, "other", "o", NULL, NULL), BERTH_OK);

    /* every key, in order, each stat'ed from inside the callback */
    seen s;
    memset(&s, 0, sizeof s);
    s.tree = t;
    CHECK_RESULT(berth_snapshot_list(t, NS, NULL, 0, collect, &s), BERTH_OK);
    CHECK(s.n == 4);
    CHECK_STR(s.keys[0], "a");
    CHECK_STR(s.keys[1], "l1");
    CHECK_STR(s.keys[2], "l2");
    CHECK_STR(s.keys[3], "v");
    CHECK(s.kinds[0] == BERTH_SNAPSHOT_ACTIVE && s.kinds[1] == BERTH_SNAPSHOT_COMMITTED &&
          s.kinds[3] == BERTH_SNAPSHOT_VIEW);

    /* returning false stops */
    memset(&s, 0, sizeof s);
    s.stop_after = 2;
    CHECK_RESULT(berth_snapshot_list(t, NS, NULL, 0, collect, &s), BERTH_OK);
    CHECK(s.n == 2);

    EXPECT_KEYS(t, "l1 l2", "kind==committed");
    EXPECT_KEYS(t, "a v", "kind==view", "kind==active");
    EXPECT_KEYS(t, "l2 v", "parent==l1");
    EXPECT_KEYS(t, "v", "labels.role==ro");
    EXPECT_KEYS(t, "a", "name==a");
    EXPECT_KEYS(t, "", "kind==nothing");
    EXPECT_KEYS(t, "a l1 l2 v", "");

    /* namespaces are separate; an unknown one is empty */
    memset(&s, 0, sizeof s);
    CHECK_RESULT(berth_snapshot_list(t, "other", NULL, 0, collect, &s), BERTH_OK);
    CHECK(s.n == 1 && strcmp(s.keys[0], "o") == 0);
    memset(&s, 0, sizeof s);
    CHECK_RESULT(berth_snapshot_list(t, "nobody", NULL, 0, collect, &s), BERTH_OK);
    CHECK(s.n == 0);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, "other", "p", "l1", NULL), BERTH_ERR_NOT_FOUND);

    /* a bad filter: INVALID, no call */
    char *before = save(t);
    const char *bad[] = {"kind==active", "==x"};
    memset(&s, 0, sizeof s);
    CHECK_REFUSED(t, before, berth_snapshot_list(t, NS, bad, 2, collect, &s), BERTH_ERR_INVALID,
                  "filter \"==x\"");
    const char *regex[] = {"name~=a.*"};
    CHECK_REFUSED(t, before, berth_snapshot_list(t, NS, regex, 1, collect, &s),
                  BERTH_ERR_INVALID, "(~=) is not supported");
    CHECK(s.n == 0);
    const char *null_filter[] = {NULL};
    CHECK_RESULT(berth_snapshot_list(t, NS, null_filter, 1, collect, &s), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_list(t, NS, NULL, 1, collect, &s), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_list(t, NS, NULL, 0, NULL, &s), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_list(NULL, NS, NULL, 0, collect, &s), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_list(t, NULL, NULL, 0, collect, &s), BERTH_ERR_NULL);
    CHECK(s.n == 0);
    free(before);
    berth_snapshot_tree_free(t);
}

/* ---- persistence -------------------------------------------------------------------------- */

/* `json` with the first `from` replaced by `to`, malloc'd. */
static char *replace(const char *json, const char *from, const char *to) {
    const char *at = strstr(json, from);
    REQUIRE(at != NULL);
    size_t head = (size_t)(at - json), n = strlen(json) - strlen(from) + strlen(to);
    char *out = malloc(n + 1);
    REQUIRE(out != NULL);
    memcpy(out, json, head);
    strcpy(out + head, to);
    strcat(out, at + strlen(from));
    return out;
}

static void test_save_and_load(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 3);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW + 7, NS, "c", "l3", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v", "l1", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "v", "k", "value"), BERTH_OK);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, "ns2", "a", NULL, NULL), BERTH_OK);
    char *json = save(t);

    /* buffer rules: one byte short copies nothing */
    size_t need = strlen(json), written = 0;
    char *small = malloc(need);
    REQUIRE(small != NULL);
    memset(small, 'x', need);
    CHECK_RESULT(berth_snapshot_tree_save(t, small, need, &written), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(written == need && small[0] == 'x' && small[need - 1] == 'x');
    free(small);

    /* load into a fresh tree of the same snapshotter: saved again, byte for byte the same */
    berth_snapshot_tree *u = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    CHECK_RESULT(berth_snapshot_tree_load(u, (const uint8_t *)json, strlen(json)), BERTH_OK);
    char *again = save(u);
    CHECK_STR(again, json);
    free(again);
    /* the same snapshots, times, labels, mounts, and the same next id */
    berth_snapshot_info a = stat_of(t, NS, "c"), b = stat_of(u, NS, "c");
    CHECK(a.id == b.id && a.kind == b.kind && a.created_at_ns == NOW + 7 &&
          b.created_at_ns == NOW + 7);
    EXPECT_STR("parent", b.parent, "l3");
    char buf[16];
    CHECK_RESULT(berth_snapshot_label(u, NS, "v", "k", buf, sizeof buf, NULL), BERTH_OK);
    CHECK_STR(buf, "value");
    berth_mounts *m1 = mounts_of(t, "c"), *m2 = mounts_of(u, "c");
    berth_mount x = mount_at(m1, 0), y = mount_at(m2, 0);
    CHECK_STR(x.data, y.data);
    berth_mounts_free(m1);
    berth_mounts_free(m2);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "next", NULL, NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_prepare(u, NOW, NS, "next", NULL, NULL), BERTH_OK);
    CHECK(stat_of(t, NS, "next").id == stat_of(u, NS, "next").id);
    /* loading drops the undo of the last mutation */
    CHECK_RESULT(berth_snapshot_tree_load(u, (const uint8_t *)json, strlen(json)), BERTH_OK);
    CHECK_RESULT(berth_snapshot_undo(u), BERTH_ERR_FAILED_PRECONDITION);
    /* not NUL-terminated input is fine: only `len` bytes are read */
    char *copy = malloc(strlen(json));
    REQUIRE(copy != NULL);
    memcpy(copy, json, strlen(json));
    CHECK_RESULT(berth_snapshot_tree_load(u, (const uint8_t *)copy, strlen(json)), BERTH_OK);
    free(copy);

    /* refused loads change nothing and say why */
    char *before = save(u);
    CHECK_REFUSED(u, before, berth_snapshot_tree_load(u, (const uint8_t *)"{", 1),
                  BERTH_ERR_INVALID, "does not load");
    CHECK_REFUSED(u, before, berth_snapshot_tree_load(u, NULL, 0), BERTH_ERR_INVALID,
                  "does not load");
    char *corrupt = replace(json, "\"parent\":\"l2\"", "\"parent\":\"gone\"");
    CHECK_REFUSED(u, before,
                  berth_snapshot_tree_load(u, (const uint8_t *)corrupt, strlen(corrupt)),
                  BERTH_ERR_INVALID, "parent missing");
    free(corrupt);
    corrupt = replace(json, "\"next_id\":", "\"next_id\":0,\"x\":");
    CHECK_REFUSED(u, before,
                  berth_snapshot_tree_load(u, (const uint8_t *)corrupt, strlen(corrupt)),
                  BERTH_ERR_INVALID, "next id");
    free(corrupt);
    /* another root, another snapshotter: not this tree's state */
    berth_snapshot_tree *other = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, "/elsewhere");
    char *empty = save(other);
    CHECK_REFUSED(other, empty,
                  berth_snapshot_tree_load(other, (const uint8_t *)json, strlen(json)),
                  BERTH_ERR_INVALID, "load the state of this snapshotter");
    free(empty);
    berth_snapshot_tree_free(other);
    other = new_tree(BERTH_SNAPSHOTTER_NATIVE, ROOT);
    empty = save(other);
    CHECK_REFUSED(other, empty,
                  berth_snapshot_tree_load(other, (const uint8_t *)json, strlen(json)),
                  BERTH_ERR_INVALID, "\"overlayfs\"");
    free(empty);
    berth_snapshot_tree_free(other);

    free(before);
    free(json);
    berth_snapshot_tree_free(u);
    berth_snapshot_tree_free(t);
}

/* ---- deep chains and the page limit -------------------------------------------------------- */

static void test_deep_chain_fits_a_page(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 501); /* l1..l501, ids 1..501 */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "c200", "l200", NULL), BERTH_OK); /* 502 */

    /* as the Snapshots API returns it: 200 absolute lowerdirs, far beyond a page */
    berth_mounts *m = mounts_of(t, "c200");
    berth_mount mt = mount_at(m, 0);
    CHECK(mt.options_len == 4);
    CHECK(mt.data_len >= BERTH_MOUNT_DATA_LIMIT);
    const char *top = "lowerdir=" ROOT "/snapshots/200/fs:";
    CHECK(strncmp(mt.options[3], top, strlen(top)) == 0);
    berth_mounts_free(m);

    /* planned: lowerdirs relative to <root>/snapshots, mounted from there; under the limit */
    CHECK_RESULT(berth_snapshot_plan_mounts(t, NS, "c200", "/run/berth/c200/rootfs", &m),
                 BERTH_OK);
    REQUIRE(m != NULL);
    EXPECT_STR("chdir", berth_mounts_chdir(m), ROOT "/snapshots");
    CHECK(berth_mounts_len(m) == 1);
    mt = mount_at(m, 0);
    CHECK(mt.data_len + 1 <= BERTH_MOUNT_DATA_LIMIT);
    CHECK(mt.data_len == strlen(mt.data));
    char want[2048] = "lowerdir=";
    for (int i = 200; i >= 1; i--) {
        char part[16];
        snprintf(part, sizeof part, i > 1 ? "%d/fs:" : "%d/fs", i);
        strcat(want, part);
    }
    EXPECT_MOUNT(&mt, "overlay", "overlay", "/run/berth/c200/rootfs", "index=off",
                 "workdir=" ROOT "/snapshots/502/work", "upperdir=" ROOT "/snapshots/502/fs",
                 want);
    berth_mounts_free(m);

    /* a view of the 501-layer chain stacks more than overlayfs can */
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v501", "l501", NULL), BERTH_OK);
    char *before = save(t);
    m = (berth_mounts *)&m;
    CHECK_REFUSED(t, before, berth_snapshot_plan_mounts(t, NS, "v501", "/t", &m),
                  BERTH_ERR_INVALID, "has 501 lower layers; overlayfs stacks at most 500");
    CHECK(m == NULL);
    CHECK_REFUSED(t, before, berth_snapshot_plan_mounts(t, NS, "c200", "rootfs", &m),
                  BERTH_ERR_INVALID, "must be an absolute path");
    CHECK_REFUSED(t, before, berth_snapshot_plan_mounts(t, NS, "l200", "/t", &m),
                  BERTH_ERR_FAILED_PRECONDITION, "not active or view");
    CHECK_REFUSED(t, before, berth_snapshot_plan_mounts(t, NS, "zz", "/t", &m),
                  BERTH_ERR_NOT_FOUND, "\"zz\"");
    free(before);
    berth_snapshot_tree_free(t);

    /* ten-digit ids: 450 layers do not fit a page even relative */
    t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    char *json = save(t);
    char *big = replace(json, "\"next_id\":1", "\"next_id\":1000000000");
    CHECK_RESULT(berth_snapshot_tree_load(t, (const uint8_t *)big, strlen(big)), BERTH_OK);
    free(big);
    free(json);
    chain(t, NS, 450);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "v", "l450", NULL), BERTH_OK);
    before = save(t);
    CHECK_REFUSED(t, before, berth_snapshot_plan_mounts(t, NS, "v", "/t", &m), BERTH_ERR_INVALID,
                  "even with relative lowerdirs; the kernel takes at most 4095");
    free(before);
    berth_snapshot_tree_free(t);
}

/* ---- every other error path --------------------------------------------------------------- */

static void test_refusals(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 1);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "act", "l1", NULL), BERTH_OK);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, "vw", "l1", NULL), BERTH_OK);
    char *before = save(t);
    berth_snapshot_actions *a = (berth_snapshot_actions *)&a;

    /* prepare and view */
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "act", NULL, &a),
                  BERTH_ERR_ALREADY_EXISTS, "\"act\" already exists in namespace \"default\"");
    CHECK(a == NULL);
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "l1", NULL, NULL),
                  BERTH_ERR_ALREADY_EXISTS, "\"l1\"");
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "n", "gone", NULL),
                  BERTH_ERR_NOT_FOUND, "parent snapshot \"gone\" of \"n\" does not exist");
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "", NULL, NULL),
                  BERTH_ERR_INVALID, "key must not be empty");
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "n", "act", NULL),
                  BERTH_ERR_INVALID, "parent \"act\" of \"n\" is active");
    CHECK_REFUSED(t, before, berth_snapshot_prepare(t, NOW, NS, "n", "vw", NULL),
                  BERTH_ERR_INVALID, "is view, not a committed snapshot");
    CHECK_REFUSED(t, before, berth_snapshot_view(t, NOW, NS, "vw", "l1", NULL),
                  BERTH_ERR_ALREADY_EXISTS, "\"vw\"");
    CHECK_REFUSED(t, before, berth_snapshot_view(t, NOW, NS, "n", "gone", NULL),
                  BERTH_ERR_NOT_FOUND, "\"gone\"");

    /* commit */
    CHECK_REFUSED(t, before, berth_snapshot_commit(t, NOW, NS, "l1", "act", 0, 0),
                  BERTH_ERR_ALREADY_EXISTS, "\"l1\" already exists");
    CHECK_REFUSED(t, before, berth_snapshot_commit(t, NOW, NS, "n", "gone", 0, 0),
                  BERTH_ERR_NOT_FOUND, "\"gone\" does not exist");
    CHECK_REFUSED(t, before, berth_snapshot_commit(t, NOW, NS, "n", "l1", 0, 0),
                  BERTH_ERR_FAILED_PRECONDITION, "\"l1\" is committed, not active");
    CHECK_REFUSED(t, before, berth_snapshot_commit(t, NOW, NS, "n", "vw", 0, 0),
                  BERTH_ERR_FAILED_PRECONDITION, "\"vw\" is view, not active");
    CHECK_REFUSED(t, before, berth_snapshot_commit(t, NOW, NS, "", "act", 0, 0),
                  BERTH_ERR_INVALID, "must not be empty");

    /* remove, stat, mounts */
    a = (berth_snapshot_actions *)&a;
    CHECK_REFUSED(t, before, berth_snapshot_remove(t, NS, "gone", &a), BERTH_ERR_NOT_FOUND,
                  "\"gone\"");
    CHECK(a == NULL);
    berth_snapshot_info info;
    memset(&info, 0x5a, sizeof info);
    CHECK_REFUSED(t, before, berth_snapshot_stat(t, NS, "gone", &info), BERTH_ERR_NOT_FOUND,
                  "\"gone\"");
    CHECK(info.id == 0x5a5a5a5a5a5a5a5aull); /* untouched */
    CHECK_REFUSED(t, before, berth_snapshot_stat(t, "ns2", "l1", &info), BERTH_ERR_NOT_FOUND,
                  "namespace \"ns2\"");
    berth_mounts *m = (berth_mounts *)&m;
    CHECK_REFUSED(t, before, berth_snapshot_mounts(t, NS, "l1", &m),
                  BERTH_ERR_FAILED_PRECONDITION, "\"l1\" is committed: not active or view");
    CHECK(m == NULL);
    CHECK_REFUSED(t, before, berth_snapshot_mounts(t, NS, "gone", &m), BERTH_ERR_NOT_FOUND,
                  "\"gone\"");

    /* strings that are not UTF-8 */
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "\xff", NULL, NULL), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, "\xfe", "k", NULL, NULL), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "k", "\xff", NULL), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "act", "k", "\xff"), BERTH_ERR_INVALID);
    const char *bad_entries[] = {"1", "\xff"};
    CHECK_RESULT(berth_snapshot_cleanup(t, bad_entries, 2, &a), BERTH_ERR_INVALID);
    CHECK(a == NULL);
    char *after = save(t);
    CHECK_STR(after, before);
    free(after);

    /* index past the end of a list */
    CHECK_RESULT(berth_snapshot_mounts(t, NS, "act", &m), BERTH_OK);
    berth_mount mt;
    CHECK_RESULT(berth_mounts_get(m, 1, &mt), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_mounts_get(m, 0, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_mounts_get(m, 1, NULL), BERTH_ERR_NULL);
    berth_mounts_free(m);

    /* the last error text follows the buffer rules */
    size_t need = 0;
    CHECK_RESULT(berth_snapshot_tree_last_error(t, NULL, 0, &need), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 0);
    char tiny[4];
    memset(tiny, 'x', sizeof tiny);
    CHECK_RESULT(berth_snapshot_tree_last_error(t, tiny, sizeof tiny, NULL),
                 BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(tiny[0] == 'x');
    berth_snapshot_tree *fresh = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    CHECK_STR(last_error(fresh), "");
    berth_snapshot_tree_free(fresh);

    /* the codes have names */
    CHECK_STR(berth_result_name(BERTH_ERR_NOT_FOUND), "BERTH_ERR_NOT_FOUND");
    CHECK_STR(berth_result_name(BERTH_ERR_ALREADY_EXISTS), "BERTH_ERR_ALREADY_EXISTS");
    CHECK_STR(berth_result_name(BERTH_ERR_FAILED_PRECONDITION), "BERTH_ERR_FAILED_PRECONDITION");
    free(before);
    berth_snapshot_tree_free(t);

    /* ids exhausted: OTHER, and nothing changes */
    t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    char *json = save(t);
    char *max = replace(json, "\"next_id\":1", "\"next_id\":18446744073709551615");
    CHECK_RESULT(berth_snapshot_tree_load(t, (const uint8_t *)max, strlen(max)), BERTH_OK);
    CHECK_REFUSED(t, max, berth_snapshot_prepare(t, NOW, NS, "k", NULL, NULL), BERTH_ERR_OTHER,
                  "snapshot ids are exhausted");
    free(max);
    free(json);
    berth_snapshot_tree_free(t);
}

static void test_new_tree_refusals(void) {
    berth_snapshot_tree *t = (berth_snapshot_tree *)&t;
    CHECK_RESULT(berth_snapshot_tree_new(BERTH_SNAPSHOTTER_UNKNOWN, ROOT, &t), BERTH_ERR_INVALID);
    CHECK(t == NULL);
    const uint32_t bad_kinds[] = {0, 3, 99, 0xffffffffu};
    for (size_t i = 0; i < sizeof bad_kinds / sizeof bad_kinds[0]; i++) {
        t = (berth_snapshot_tree *)&t;
        CHECK_RESULT(berth_snapshot_tree_new(bad_kinds[i], ROOT, &t), BERTH_ERR_INVALID);
        CHECK(t == NULL);
    }
    const char *bad_roots[] = {"", "/", "rel", "/a/", "/a//b", "/a/../b", "/a/./b",
                               "/a:b", "/a,b", "/a/\xff"};
    for (size_t i = 0; i < sizeof bad_roots / sizeof bad_roots[0]; i++) {
        t = (berth_snapshot_tree *)&t;
        checks++;
        berth_result r = berth_snapshot_tree_new(BERTH_SNAPSHOTTER_NATIVE, bad_roots[i], &t);
        if (r != BERTH_ERR_INVALID || t != NULL) {
            fprintf(stderr, "%s:%d: root \"%s\" gave %s\n", __FILE__, __LINE__, bad_roots[i],
                    berth_result_name(r));
            failures++;
        }
    }
    t = (berth_snapshot_tree *)&t;
    CHECK_RESULT(berth_snapshot_tree_new(BERTH_SNAPSHOTTER_OVERLAYFS, NULL, &t), BERTH_ERR_NULL);
    CHECK(t == NULL);
    CHECK_RESULT(berth_snapshot_tree_new(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT, NULL),
                 BERTH_ERR_NULL);
}

/* A NULL where a pointer is required is BERTH_ERR_NULL everywhere, and out-pointers are
 * cleared; lists and NULL handles are harmless. */
static void test_nulls(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 1);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "act", "l1", NULL), BERTH_OK);
    char *before = save(t);
    berth_snapshot_info info;
    char buf[64];
    berth_mounts *m = (berth_mounts *)&m;
    berth_snapshot_actions *a = (berth_snapshot_actions *)&a;

    CHECK_RESULT(berth_snapshot_tree_load(NULL, (const uint8_t *)"{}", 2), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_tree_load(t, NULL, 3), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_tree_save(NULL, buf, sizeof buf, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_tree_save(t, NULL, 8, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_tree_last_error(NULL, buf, sizeof buf, NULL), BERTH_ERR_NULL);
    CHECK(berth_snapshot_tree_snapshotter(NULL) == BERTH_SNAPSHOTTER_UNKNOWN);

    CHECK_RESULT(berth_snapshot_prepare(NULL, NOW, NS, "k", NULL, &a), BERTH_ERR_NULL);
    CHECK(a == NULL);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NULL, "k", NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, NULL, NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_view(NULL, NOW, NS, "k", NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_view(t, NOW, NS, NULL, "l1", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_commit(NULL, NOW, NS, "n", "act", 0, 0), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NULL, "n", "act", 0, 0), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NS, NULL, "act", 0, 0), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_commit(t, NOW, NS, "n", NULL, 0, 0), BERTH_ERR_NULL);
    a = (berth_snapshot_actions *)&a;
    CHECK_RESULT(berth_snapshot_remove(NULL, NS, "act", &a), BERTH_ERR_NULL);
    CHECK(a == NULL);
    CHECK_RESULT(berth_snapshot_remove(t, NS, NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_remove(t, NULL, "act", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_rebase(NULL, NOW, NS, "act", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_rebase(t, NOW, NS, NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_rebase(t, NOW, NULL, "act", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_set_label(NULL, NOW, NS, "act", "k", "v"), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "act", NULL, "v"), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, "act", "k", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_set_label(t, NOW, NS, NULL, "k", "v"), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_clear_labels(NULL, NOW, NS, "act"), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_clear_labels(t, NOW, NS, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_undo(NULL), BERTH_ERR_NULL);

    CHECK_RESULT(berth_snapshot_stat(NULL, NS, "act", &info), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_stat(t, NS, "act", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_stat(t, NULL, "act", &info), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_stat(t, NS, NULL, &info), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_label(NULL, NS, "act", "k", buf, sizeof buf, NULL),
                 BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_label(t, NS, "act", NULL, buf, sizeof buf, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_label(t, NS, "act", "k", NULL, 8, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_mounts(NULL, NS, "act", &m), BERTH_ERR_NULL);
    CHECK(m == NULL);
    CHECK_RESULT(berth_snapshot_mounts(t, NS, "act", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_mounts(t, NS, NULL, &m), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_plan_mounts(t, NS, "act", NULL, &m), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_plan_mounts(t, NS, "act", "/t", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_plan_mounts(NULL, NS, "act", "/t", &m), BERTH_ERR_NULL);
    CHECK(m == NULL);
    a = (berth_snapshot_actions *)&a;
    CHECK_RESULT(berth_snapshot_cleanup(NULL, NULL, 0, &a), BERTH_ERR_NULL);
    CHECK(a == NULL);
    CHECK_RESULT(berth_snapshot_cleanup(t, NULL, 0, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_snapshot_cleanup(t, NULL, 2, &a), BERTH_ERR_NULL);
    const char *null_entry[] = {"1", NULL};
    CHECK_RESULT(berth_snapshot_cleanup(t, null_entry, 2, &a), BERTH_ERR_NULL);

    berth_snapshot_action act;
    CHECK(berth_snapshot_actions_len(NULL) == 0);
    CHECK_RESULT(berth_snapshot_actions_get(NULL, 0, &act), BERTH_ERR_NULL);
    CHECK(berth_mounts_len(NULL) == 0);
    CHECK(berth_mounts_chdir(NULL) == NULL);
    berth_mount mt;
    CHECK_RESULT(berth_mounts_get(NULL, 0, &mt), BERTH_ERR_NULL);
    berth_snapshot_actions_free(NULL);
    berth_mounts_free(NULL);
    berth_snapshot_tree_free(NULL);

    char *after = save(t);
    CHECK_STR(after, before);
    free(after);
    free(before);
    berth_snapshot_tree_free(t);
}

/* Lists outlive the tree; stat's strings can be passed straight back (walking up a chain). */
static void test_lifetimes(void) {
    berth_snapshot_tree *t = new_tree(BERTH_SNAPSHOTTER_OVERLAYFS, ROOT);
    chain(t, NS, 5);
    CHECK_RESULT(berth_snapshot_prepare(t, NOW, NS, "c", "l5", NULL), BERTH_OK);

    /* walk from c to the base, each stat taking the previous stat's parent as its key */
    berth_snapshot_info info = stat_of(t, NS, "c");
    int depth = 0;
    while (info.parent != NULL && depth < 10) {
        CHECK_RESULT(berth_snapshot_stat(t, NS, info.parent, &info), BERTH_OK);
        depth++;
    }
    CHECK(depth == 5);
    EXPECT_STR("base", info.name, "l1");

    berth_mounts *m = mounts_of(t, "c");
    berth_snapshot_actions *a = NULL;
    CHECK_RESULT(berth_snapshot_remove(t, NS, "c", &a), BERTH_OK);
    char *source = NULL;
    berth_snapshot_tree_free(t);
    /* both lists are still readable after the tree is gone */
    berth_mount mt = mount_at(m, 0);
    source = dup_s(mt.options[3]);
    CHECK(strstr(source, "lowerdir=" ROOT "/snapshots/5/fs:") == source);
    EXPECT_ACTION(a, 0, REMOVE_ALL, "snapshots/6", NULL, NULL, 0);
    free(source);
    berth_mounts_free(m);
    berth_snapshot_actions_free(a);
}

int main(void) {
    test_base_layer_and_container();
    test_remove_parent_is_refused();
    test_rebase();
    test_native();
    test_undo_and_cleanup();
    test_labels();
    test_list();
    test_save_and_load();
    test_deep_chain_fits_a_page();
    test_refusals();
    test_new_tree_refusals();
    test_nulls();
    test_lifetimes();
    return check_summary("test_snapshot");
}
