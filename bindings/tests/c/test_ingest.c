/*
 * The Ingest machine driven from C, by a small in-memory host: files are malloc'd buffers in a
 * flat table keyed by path, handles index a table of open paths. The host performs every
 * operation the ingest asks for and logs it, so the tests can check what was (not) done.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"
#include "check.h"

/* Linux errno values, as the core reasons about them (berth_core::op::errno). */
enum { E_NOENT = 2, E_BADF = 9, E_EXIST = 17, E_ISDIR = 21, E_NOSPC = 28, E_NOSYS = 38 };

#define S_DIR 0040000u
#define S_REG 0100000u

static const uint64_t NOW = 1700000000000000000ull;
static const char *HELLO_SHA256 = /* sha256("hello world") */
    "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
static const char *HELLO_HEX =
    "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";

/* ---- the in-memory host ------------------------------------------------------------------- */

typedef struct {
    char *path;
    int is_dir;
    uint8_t *data;
    size_t len;
} entry;

typedef struct {
    char *path; /* NULL when closed */
} slot;

typedef struct {
    berth_op_kind kind;
    char path[256]; /* the op's path, or for handle ops the handle's file */
} log_line;

#define MAX_ENTRIES 64
#define MAX_HANDLES 64
#define MAX_LOG 512

typedef struct {
    entry entries[MAX_ENTRIES];
    size_t nentries;
    slot handles[MAX_HANDLES];
    size_t nhandles;
    log_line log[MAX_LOG];
    size_t nlog;
    size_t max_write;           /* if > 0, WRITE writes at most this many bytes (short writes) */
    int fail_next_data_write;   /* if non-zero, the next WRITE to a ".../data" file fails with it */
} host;

static char *dup_n(const char *s, size_t n) {
    char *p = malloc(n + 1);
    REQUIRE(p != NULL);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *dup_s(const char *s) { return dup_n(s, strlen(s)); }

static host *host_new(void) {
    host *h = calloc(1, sizeof *h);
    REQUIRE(h != NULL);
    return h;
}

static entry *host_find(host *h, const char *path) {
    for (size_t i = 0; i < h->nentries; i++) {
        if (strcmp(h->entries[i].path, path) == 0) return &h->entries[i];
    }
    return NULL;
}

static void host_remove_at(host *h, size_t i) {
    free(h->entries[i].path);
    free(h->entries[i].data);
    h->entries[i] = h->entries[--h->nentries];
}

static entry *host_add(host *h, const char *path, int is_dir) {
    REQUIRE(h->nentries < MAX_ENTRIES);
    entry *e = &h->entries[h->nentries++];
    e->path = dup_s(path);
    e->is_dir = is_dir;
    e->data = NULL;
    e->len = 0;
    return e;
}

/* The parent directory of `path` exists ("" is the root, which always does). */
static int host_parent_exists(host *h, const char *path) {
    const char *slash = strrchr(path, '/');
    if (slash == NULL) return 1;
    char *parent = dup_n(path, (size_t)(slash - path));
    entry *e = host_find(h, parent);
    free(parent);
    return e != NULL && e->is_dir;
}

static void host_resize(entry *e, size_t len) {
    if (len > e->len) {
        uint8_t *p = realloc(e->data, len);
        REQUIRE(p != NULL);
        memset(p + e->len, 0, len - e->len);
        e->data = p;
    }
    e->len = len;
}

static void host_set(entry *e, const uint8_t *data, size_t len) {
    host_resize(e, 0);
    host_resize(e, len);
    if (len > 0) memcpy(e->data, data, len);
}

static int host_mkdir_p(host *h, const char *path) {
    size_t n = strlen(path);
    for (size_t i = 1; i <= n; i++) {
        if (i == n || path[i] == '/') {
            char *prefix = dup_n(path, i);
            entry *e = host_find(h, prefix);
            if (e == NULL) host_add(h, prefix, 1);
            free(prefix);
            if (e != NULL && !e->is_dir) return E_EXIST;
        }
    }
    return 0;
}

static int host_under(const char *path, const char *root) {
    size_t n = strlen(root);
    return strcmp(path, root) == 0 || (strncmp(path, root, n) == 0 && path[n] == '/');
}

static size_t host_count_under(host *h, const char *root) {
    size_t n = 0;
    for (size_t i = 0; i < h->nentries; i++) n += host_under(h->entries[i].path, root);
    return n;
}

static entry *host_handle_file(host *h, uint64_t handle) {
    if (handle >= h->nhandles || h->handles[handle].path == NULL) return NULL;
    return host_find(h, h->handles[handle].path);
}

static size_t host_open_handles(host *h) {
    size_t n = 0;
    for (size_t i = 0; i < h->nhandles; i++) n += h->handles[i].path != NULL;
    return n;
}

/* What a host does when the ingest that owned its handles is gone (after a crash). */
static void host_close_all(host *h) {
    for (size_t i = 0; i < h->nhandles; i++) {
        free(h->handles[i].path);
        h->handles[i].path = NULL;
    }
}

static void host_free(host *h) {
    while (h->nentries > 0) host_remove_at(h, 0);
    host_close_all(h);
    free(h);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static void host_log(host *h, berth_op_kind kind, const char *path) {
    REQUIRE(h->nlog < MAX_LOG);
    h->log[h->nlog].kind = kind;
    snprintf(h->log[h->nlog].path, sizeof h->log[h->nlog].path, "%s", path ? path : "");
    h->nlog++;
}

/* How many logged ops since `mark` are of `kind` on `path`. */
static size_t host_ops(host *h, size_t mark, berth_op_kind kind, const char *path) {
    size_t n = 0;
    for (size_t i = mark; i < h->nlog; i++) {
        n += h->log[i].kind == kind && strcmp(h->log[i].path, path) == 0;
    }
    return n;
}

/* Performs one operation; returns 0 and fills `res`, or returns an errno. */
static int host_perform(host *h, const berth_op *op, berth_op_output *res) {
    memset(res, 0, sizeof *res);
    res->kind = BERTH_OP_OUTPUT_DONE;
    if (op->path != NULL) {
        /* Lent strings are NUL-terminated and their length is right. */
        CHECK(strlen(op->path) == op->path_len);
    }
    if (op->to != NULL) CHECK(strlen(op->to) == op->to_len);

    entry *file = NULL;
    switch (op->kind) {
    case BERTH_OP_WRITE:
    case BERTH_OP_READ:
    case BERTH_OP_TRUNCATE:
    case BERTH_OP_FSYNC:
    case BERTH_OP_CLOSE:
        file = host_handle_file(h, op->handle);
        host_log(h, op->kind, file ? file->path : "<bad handle>");
        if (file == NULL) return E_BADF;
        break;
    default:
        host_log(h, op->kind, op->path);
        break;
    }

    entry *e;
    switch (op->kind) {
    case BERTH_OP_MKDIR:
        return host_mkdir_p(h, op->path);
    case BERTH_OP_OPEN:
        e = host_find(h, op->path);
        if (e == NULL) {
            if (!(op->open_flags & BERTH_OPEN_CREATE) || !host_parent_exists(h, op->path)) {
                return E_NOENT;
            }
            e = host_add(h, op->path, 0);
        } else if ((op->open_flags & BERTH_OPEN_CREATE) &&
                   (op->open_flags & BERTH_OPEN_EXCLUSIVE)) {
            return E_EXIST;
        }
        if (e->is_dir) return E_ISDIR;
        if (op->open_flags & BERTH_OPEN_TRUNCATE) host_resize(e, 0);
        REQUIRE(h->nhandles < MAX_HANDLES);
        h->handles[h->nhandles].path = dup_s(op->path);
        res->kind = BERTH_OP_OUTPUT_OPENED;
        res->handle = h->nhandles++;
        res->size = e->len;
        return 0;
    case BERTH_OP_WRITE: {
        if (h->fail_next_data_write && ends_with(file->path, "/data")) {
            int err = h->fail_next_data_write;
            h->fail_next_data_write = 0;
            return err;
        }
        size_t n = op->data_len;
        if (h->max_write > 0 && n > h->max_write) n = h->max_write;
        if (file->len < op->offset + n) host_resize(file, (size_t)op->offset + n);
        if (n > 0) memcpy(file->data + op->offset, op->data, n);
        res->kind = BERTH_OP_OUTPUT_WRITTEN;
        res->written = n;
        return 0;
    }
    case BERTH_OP_READ: {
        size_t off = op->offset < file->len ? (size_t)op->offset : file->len;
        size_t n = file->len - off;
        if (n > op->len) n = (size_t)op->len;
        res->kind = BERTH_OP_OUTPUT_DATA;
        res->data = file->data ? file->data + off : NULL;
        res->data_len = n;
        return 0;
    }
    case BERTH_OP_TRUNCATE:
        host_resize(file, (size_t)op->len);
        return 0;
    case BERTH_OP_FSYNC:
        return 0;
    case BERTH_OP_CLOSE:
        free(h->handles[op->handle].path);
        h->handles[op->handle].path = NULL;
        return 0;
    case BERTH_OP_FSYNC_DIR:
        e = host_find(h, op->path);
        return e != NULL && e->is_dir ? 0 : E_NOENT;
    case BERTH_OP_WRITE_FILE:
        if (!host_parent_exists(h, op->path)) return E_NOENT;
        e = host_find(h, op->path);
        if (e == NULL) e = host_add(h, op->path, 0);
        host_set(e, op->data, op->data_len);
        return 0;
    case BERTH_OP_READ_FILE:
        e = host_find(h, op->path);
        if (e == NULL) return E_NOENT;
        if (e->is_dir) return E_ISDIR;
        res->kind = BERTH_OP_OUTPUT_DATA;
        res->data = e->data;
        res->data_len = e->len;
        return 0;
    case BERTH_OP_STAT:
        e = host_find(h, op->path);
        if (e == NULL) return E_NOENT;
        res->kind = BERTH_OP_OUTPUT_STAT;
        res->size = e->len;
        res->mode = e->is_dir ? (S_DIR | 0755u) : (S_REG | 0644u);
        res->mtime_ns = NOW;
        return 0;
    case BERTH_OP_RENAME: {
        e = host_find(h, op->path);
        if (e == NULL || !host_parent_exists(h, op->to)) return E_NOENT;
        entry *old = host_find(h, op->to);
        if (old != NULL && old != e) {
            host_remove_at(h, (size_t)(old - h->entries));
            e = host_find(h, op->path); /* the table moved */
        }
        /* Open handles follow the file, as file descriptors follow the inode. */
        for (size_t i = 0; i < h->nhandles; i++) {
            if (h->handles[i].path && strcmp(h->handles[i].path, op->path) == 0) {
                free(h->handles[i].path);
                h->handles[i].path = dup_s(op->to);
            }
        }
        free(e->path);
        e->path = dup_s(op->to);
        return 0;
    }
    case BERTH_OP_REMOVE:
        e = host_find(h, op->path);
        if (e == NULL) return E_NOENT;
        host_remove_at(h, (size_t)(e - h->entries));
        return 0;
    case BERTH_OP_REMOVE_ALL:
        for (size_t i = h->nentries; i-- > 0;) {
            if (host_under(h->entries[i].path, op->path)) host_remove_at(h, i);
        }
        return 0;
    default:
        return E_NOSYS;
    }
}

/* ---- the run loop ------------------------------------------------------------------------- */

typedef struct {
    berth_done done;
    char reason[256]; /* copied: done.recovery_reason is only valid until the next call */
} finished;

/* Drains the ingest after an input, exactly as the contract says: poll until NONE, performing
 * each OP and completing it. Requires exactly one DONE, which it returns. */
static finished drain(host *h, berth_ingest *ing, uint64_t now) {
    finished f;
    memset(&f, 0, sizeof f);
    int dones = 0;
    for (;;) {
        berth_output out;
        REQUIRE(berth_ingest_poll(ing, &out) == BERTH_OK);
        if (out.kind == BERTH_OUTPUT_NONE) break;
        if (out.kind == BERTH_OUTPUT_OP) {
            berth_op_output res;
            int err = host_perform(h, &out.op, &res);
            berth_result r = berth_ingest_complete(ing, now, out.op.id, err, &res);
            if (r != BERTH_OK) {
                fprintf(stderr, "complete gave %s\n", berth_result_name(r));
                REQUIRE(r == BERTH_OK);
            }
        } else if (out.kind == BERTH_OUTPUT_DONE) {
            dones++;
            f.done = out.done;
            if (out.done.recovery_reason != NULL) {
                snprintf(f.reason, sizeof f.reason, "%s", out.done.recovery_reason);
            }
        }
        /* EVENT and WAIT: the ingest emits neither; a host would publish / arm a timer. */
    }
    REQUIRE(dones == 1);
    return f;
}

static berth_ingest *open_ingest(host *h, const char *dir, const char *ref, uint64_t total,
                                 finished *out) {
    berth_ingest *ing = NULL;
    REQUIRE(berth_ingest_open(NOW, "default", ref, NULL, total, dir, "content/blobs", &ing) ==
            BERTH_OK);
    REQUIRE(ing != NULL);
    *out = drain(h, ing, NOW);
    REQUIRE(out->done.result == BERTH_OK);
    REQUIRE(out->done.reply == BERTH_REPLY_OPENED);
    return ing;
}

static berth_result write_str(host *h, berth_ingest *ing, uint64_t now, uint64_t offset,
                              const char *s, finished *out) {
    berth_result r = berth_ingest_write(ing, now, offset, (const uint8_t *)s, strlen(s));
    if (r == BERTH_OK) *out = drain(h, ing, now);
    return r;
}

static const char *last_error(berth_ingest *ing) {
    static char buf[1024];
    size_t n = 0;
    REQUIRE(berth_ingest_last_error(ing, buf, sizeof buf, &n) == BERTH_OK);
    CHECK(strlen(buf) == n);
    return buf;
}

static berth_digest *sha256_of(const char *s) {
    berth_digest *d = NULL;
    REQUIRE(berth_digest_sha256((const uint8_t *)s, strlen(s), &d) == BERTH_OK);
    return d;
}

static uint64_t status_offset(berth_ingest *ing) {
    berth_status st;
    REQUIRE(berth_ingest_status(ing, &st) == BERTH_OK);
    return st.offset;
}

static int file_is(host *h, const char *path, const char *content) {
    entry *e = host_find(h, path);
    return e != NULL && !e->is_dir && e->len == strlen(content) &&
           (e->len == 0 || memcmp(e->data, content, e->len) == 0);
}

/* ---- tests -------------------------------------------------------------------------------- */

/* open → "hello " at 0 → "world" at 6 → a write at a wrong offset is refused and changes
 * nothing → commit with the right size and digest → the blob is in place. */
static void test_write_and_commit(void) {
    host *h = host_new();
    finished f;
    berth_ingest *ing = open_ingest(h, "content/ingest/a", "ref-a", 0, &f);
    CHECK(f.done.recovery == BERTH_RECOVERY_CREATED);
    CHECK(f.done.status.offset == 0);
    CHECK(strcmp(f.done.status.reference, "ref-a") == 0);
    CHECK(f.done.status.reference_len == 5);
    CHECK(!f.done.status.has_expected && f.done.status.expected[0] == '\0');
    CHECK(f.done.status.started_at_ns == NOW);

    CHECK_RESULT(write_str(h, ing, NOW + 1, 0, "hello ", &f), BERTH_OK);
    CHECK(f.done.result == BERTH_OK && f.done.reply == BERTH_REPLY_STATUS);
    CHECK(f.done.status.offset == 6);
    CHECK(f.done.status.updated_at_ns == NOW + 1);
    CHECK_RESULT(write_str(h, ing, NOW + 2, 6, "world", &f), BERTH_OK);
    CHECK(f.done.status.offset == 11);
    CHECK(file_is(h, "content/ingest/a/data", "hello world"));

    /* A write at the wrong offset: refused at once, nothing queued, nothing done. */
    size_t mark = h->nlog;
    CHECK_RESULT(write_str(h, ing, NOW + 3, 5, "XX", &f), BERTH_ERR_OUT_OF_RANGE);
    CHECK(strstr(last_error(ing), "offset 5") != NULL);
    CHECK(strstr(last_error(ing), "11") != NULL);
    CHECK_RESULT(write_str(h, ing, NOW + 3, 12, "XX", &f), BERTH_ERR_OUT_OF_RANGE);
    berth_output out;
    CHECK_RESULT(berth_ingest_poll(ing, &out), BERTH_OK);
    CHECK(out.kind == BERTH_OUTPUT_NONE);
    CHECK(h->nlog == mark);
    CHECK(status_offset(ing) == 11);
    CHECK(file_is(h, "content/ingest/a/data", "hello world"));

    berth_digest *want = sha256_of("hello world");
    CHECK_RESULT(berth_ingest_commit(ing, NOW + 4, 11, want), BERTH_OK);
    f = drain(h, ing, NOW + 4);
    CHECK(f.done.result == BERTH_OK);
    CHECK(f.done.reply == BERTH_REPLY_COMMITTED);
    CHECK(strcmp(f.done.digest, HELLO_SHA256) == 0);
    CHECK(f.done.size == 11);
    CHECK(!f.done.already_present);

    char blob[256];
    snprintf(blob, sizeof blob, "content/blobs/sha256/%s", HELLO_HEX);
    CHECK(file_is(h, blob, "hello world"));
    CHECK(host_count_under(h, "content/ingest/a") == 0);
    CHECK(host_open_handles(h) == 0);

    /* A committed ingest is finished. */
    CHECK_RESULT(write_str(h, ing, NOW + 5, 11, "!", &f), BERTH_ERR_FINISHED);
    CHECK_RESULT(berth_ingest_commit(ing, NOW + 5, 0, NULL), BERTH_ERR_FINISHED);

    berth_digest_free(want);
    berth_ingest_free(ing);
    host_free(h);
}

/* Commit with the wrong digest (or size): DIGEST_MISMATCH (SIZE_MISMATCH), and the ingest's
 * directory is gone from the host. */
static void test_commit_mismatch_removes_the_ingest(void) {
    host *h = host_new();
    finished f;
    berth_ingest *ing = open_ingest(h, "content/ingest/b", "ref-b", 0, &f);
    CHECK_RESULT(write_str(h, ing, NOW, 0, "abc", &f), BERTH_OK);
    CHECK(host_count_under(h, "content/ingest/b") > 0);

    berth_digest *wrong = sha256_of("xyz");
    CHECK_RESULT(berth_ingest_commit(ing, NOW, 3, wrong), BERTH_OK);
    f = drain(h, ing, NOW);
    CHECK(f.done.result == BERTH_ERR_DIGEST_MISMATCH);
    CHECK(f.done.reply == BERTH_REPLY_NONE);
    CHECK(host_count_under(h, "content/ingest/b") == 0);
    CHECK(host_count_under(h, "content/blobs/sha256") == 0);
    CHECK(host_open_handles(h) == 0);

    /* The error names both digests. */
    char wrong_s[BERTH_DIGEST_STRING_MAX];
    REQUIRE(berth_digest_to_string(wrong, wrong_s, sizeof wrong_s, NULL) == BERTH_OK);
    CHECK(strstr(last_error(ing), wrong_s) != NULL);
    CHECK(strstr(last_error(ing),
                 "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") !=
          NULL); /* sha256("abc") */
    CHECK_RESULT(write_str(h, ing, NOW, 3, "d", &f), BERTH_ERR_FINISHED);
    berth_digest_free(wrong);
    berth_ingest_free(ing);

    /* The same for a wrong size. */
    ing = open_ingest(h, "content/ingest/c", "ref-c", 0, &f);
    CHECK_RESULT(write_str(h, ing, NOW, 0, "abc", &f), BERTH_OK);
    CHECK_RESULT(berth_ingest_commit(ing, NOW, 4, NULL), BERTH_OK);
    f = drain(h, ing, NOW);
    CHECK(f.done.result == BERTH_ERR_SIZE_MISMATCH);
    CHECK(strstr(last_error(ing), "expected size 4") != NULL);
    CHECK(host_count_under(h, "content/ingest/c") == 0);
    berth_ingest_free(ing);
    host_free(h);
}

/* Crash and resume: write, drop the ingest without closing it, reopen the same directory.
 * The offset comes back from the hash checkpoint: the host sees no read of the data file
 * (only the state file is read), and the blob still gets the right digest. */
static void test_crash_and_resume(void) {
    host *h = host_new();
    h->max_write = 4; /* short writes on the way: the ingest must finish each write itself */
    finished f;
    berth_ingest *ing = open_ingest(h, "content/ingest/r", "ref-r", 11, &f);
    CHECK_RESULT(write_str(h, ing, NOW + 1, 0, "hello ", &f), BERTH_OK);
    CHECK(f.done.status.offset == 6);
    CHECK(file_is(h, "content/ingest/r/data", "hello "));

    /* Crash: no close. The host closes what the dead ingest had open. */
    berth_ingest_free(ing);
    host_close_all(h);
    /* A write that reached the data file but whose checkpoint never landed: it is cut off. */
    entry *data = host_find(h, "content/ingest/r/data");
    REQUIRE(data != NULL);
    host_resize(data, 9);
    memcpy(data->data + 6, "wor", 3);

    size_t mark = h->nlog;
    ing = open_ingest(h, "content/ingest/r", "ref-r", 0, &f);
    CHECK(f.done.recovery == BERTH_RECOVERY_RESUMED);
    CHECK(f.done.recovery_discarded == 3);
    CHECK(f.done.status.offset == 6);
    CHECK(f.done.status.total == 11);
    CHECK(f.done.status.updated_at_ns == NOW + 1);
    CHECK(status_offset(ing) == 6);

    /* No byte of data was read back; the checkpoint in the state file was. */
    CHECK(host_ops(h, mark, BERTH_OP_READ, "content/ingest/r/data") == 0);
    CHECK(host_ops(h, mark, BERTH_OP_READ_FILE, "content/ingest/r/data") == 0);
    CHECK(host_ops(h, mark, BERTH_OP_READ, "content/ingest/r/state") == 1);
    CHECK(file_is(h, "content/ingest/r/data", "hello "));

    CHECK_RESULT(write_str(h, ing, NOW + 2, 6, "world", &f), BERTH_OK);
    CHECK(f.done.status.offset == 11);
    berth_digest *want = sha256_of("hello world");
    CHECK_RESULT(berth_ingest_commit(ing, NOW + 3, 11, want), BERTH_OK);
    f = drain(h, ing, NOW + 3);
    CHECK(f.done.result == BERTH_OK && f.done.reply == BERTH_REPLY_COMMITTED);
    CHECK(strcmp(f.done.digest, HELLO_SHA256) == 0);
    char blob[256];
    snprintf(blob, sizeof blob, "content/blobs/sha256/%s", HELLO_HEX);
    CHECK(file_is(h, blob, "hello world"));
    CHECK(host_count_under(h, "content/ingest/r") == 0);
    berth_digest_free(want);
    berth_ingest_free(ing);
    host_free(h);
}

/* Close keeps the ingest resumable; a failed host write is an IO error that changes nothing;
 * abort removes everything; an expected digest given at open is kept by a later open. */
static void test_close_io_error_and_abort(void) {
    host *h = host_new();
    berth_digest *want = sha256_of("hello world");
    berth_ingest *ing = NULL;
    REQUIRE(berth_ingest_open(NOW, "default", "ref-x", want, 11, "content/ingest/x",
                              "content/blobs", &ing) == BERTH_OK);
    finished f = drain(h, ing, NOW);
    CHECK(f.done.reply == BERTH_REPLY_OPENED);
    CHECK(f.done.status.has_expected);
    CHECK(strcmp(f.done.status.expected, HELLO_SHA256) == 0);

    CHECK_RESULT(write_str(h, ing, NOW, 0, "hello", &f), BERTH_OK);
    h->fail_next_data_write = E_NOSPC;
    CHECK_RESULT(write_str(h, ing, NOW, 5, " world", &f), BERTH_OK);
    CHECK(f.done.result == BERTH_ERR_IO);
    CHECK(f.done.io_errno == E_NOSPC);
    CHECK(strstr(last_error(ing), "errno 28") != NULL);
    CHECK(status_offset(ing) == 5);

    CHECK_RESULT(berth_ingest_close(ing, NOW), BERTH_OK);
    f = drain(h, ing, NOW);
    CHECK(f.done.reply == BERTH_REPLY_CLOSED);
    CHECK(host_open_handles(h) == 0);
    CHECK_RESULT(write_str(h, ing, NOW, 5, " world", &f), BERTH_ERR_FINISHED);
    berth_ingest_free(ing);

    /* Reopened without an expected digest: the stored one comes back. */
    ing = open_ingest(h, "content/ingest/x", "ref-x", 0, &f);
    CHECK(f.done.recovery == BERTH_RECOVERY_RESUMED);
    CHECK(f.done.status.offset == 5);
    CHECK(strcmp(f.done.status.expected, HELLO_SHA256) == 0);

    CHECK_RESULT(berth_ingest_abort(ing, NOW), BERTH_OK);
    f = drain(h, ing, NOW);
    CHECK(f.done.reply == BERTH_REPLY_ABORTED);
    CHECK(host_count_under(h, "content/ingest/x") == 0);
    CHECK(host_open_handles(h) == 0);
    berth_ingest_free(ing);
    berth_digest_free(want);
    host_free(h);
}

/* The contract's guard rails: busy while an op is outstanding, completions checked, NULLs. */
static void test_contract_and_nulls(void) {
    host *h = host_new();
    berth_ingest *ing = NULL;
    REQUIRE(berth_ingest_open(NOW, "default", "ref-n", NULL, 0, "content/ingest/n",
                              "content/blobs", &ing) == BERTH_OK);
    berth_output out;
    REQUIRE(berth_ingest_poll(ing, &out) == BERTH_OK);
    REQUIRE(out.kind == BERTH_OUTPUT_OP);
    CHECK(out.op.kind == BERTH_OP_READ_FILE);
    CHECK(strcmp(out.op.path, "content/ingest/n/meta") == 0);

    /* Still opening: requests are refused. */
    CHECK_RESULT(berth_ingest_write(ing, NOW, 0, (const uint8_t *)"a", 1), BERTH_ERR_BUSY);
    CHECK_RESULT(berth_ingest_abort(ing, NOW), BERTH_ERR_BUSY);
    /* Unknown ids and output kinds are refused; the op stays outstanding. */
    CHECK_RESULT(berth_ingest_complete(ing, NOW, out.op.id + 77, E_NOENT, NULL),
                 BERTH_ERR_UNEXPECTED_COMPLETION);
    berth_op_output bogus;
    memset(&bogus, 0, sizeof bogus);
    bogus.kind = 1000;
    CHECK_RESULT(berth_ingest_complete(ing, NOW, out.op.id, 0, &bogus), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_ingest_complete(ing, NOW, out.op.id, 0, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_complete(ing, NOW, out.op.id, E_NOENT, NULL), BERTH_OK);
    finished f = drain(h, ing, NOW);
    CHECK(f.done.reply == BERTH_REPLY_OPENED);

    CHECK_RESULT(berth_ingest_set_total(ing, NOW, 42), BERTH_OK);
    f = drain(h, ing, NOW);
    CHECK(f.done.reply == BERTH_REPLY_STATUS && f.done.status.total == 42);

    /* NULLs */
    berth_ingest *none = NULL;
    CHECK_RESULT(berth_ingest_open(NOW, NULL, "r", NULL, 0, "d", "b", &none), BERTH_ERR_NULL);
    CHECK(none == NULL);
    CHECK_RESULT(berth_ingest_open(NOW, "ns", "r", NULL, 0, "d", "b", NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_open(NOW, "ns", "\xff", NULL, 0, "d", "b", &none),
                 BERTH_ERR_INVALID);
    CHECK_RESULT(berth_ingest_poll(NULL, &out), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_poll(ing, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_write(NULL, NOW, 0, NULL, 0), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_write(ing, NOW, 0, NULL, 5), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_commit(NULL, NOW, 0, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_complete(NULL, NOW, 0, E_NOENT, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_close(NULL, NOW), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_abort(NULL, NOW), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_set_total(NULL, NOW, 1), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_status(NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_status(ing, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_ingest_last_error(NULL, NULL, 0, NULL), BERTH_ERR_NULL);
    size_t need = 0;
    CHECK_RESULT(berth_ingest_last_error(ing, NULL, 0, &need), BERTH_ERR_BUFFER_TOO_SMALL);
    CHECK(need > 0);
    berth_ingest_free(NULL);

    berth_ingest_free(ing);
    host_free(h);
}

int main(void) {
    test_write_and_commit();
    test_commit_mismatch_removes_the_ingest();
    test_crash_and_resume();
    test_close_io_error_and_abort();
    test_contract_and_nulls();
    return check_summary("test_ingest");
}
