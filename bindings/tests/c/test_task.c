/*
 * The task table driven from C: containerd's task and exec lifecycle with a host that plays
 * the runtime. Walks ctr's sequences (`ctr run --rm`, `ctr tasks exec`, pause/resume), a
 * runtime crash, a daemon restart through save/load, and every error path, checking calls,
 * events, replies and Wait answers field by field. Every refused call is checked to change
 * nothing (the saved JSON before and after is byte for byte equal) and to publish nothing.
 * Run under ASan/UBSan with leak detection.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "berth.h"
#include "check.h"

#define NS "default"

static uint64_t now = 1700000000000000000ull;

/* ---- helpers ------------------------------------------------------------------------------ */

static uint64_t tick(void) { return ++now; }

/* A polled output, copied: the strings it lends die at the next call into the table. */
typedef struct seen {
    berth_task_output_kind kind;
    /* EVENT */
    berth_task_event_kind event;
    char topic[64];
    char ns[64];
    char container[64];
    char id[64];
    char bundle[128];
    char stdin_path[64];
    uint32_t pid;
    uint32_t exit_status;
    uint64_t exited_at_ns;
    bool terminal;
    size_t rootfs_len;
    /* DONE */
    uint64_t call_id;
    berth_result result;
    uint32_t grpc_code;
    char error[256];
    berth_task_reply_kind reply;
    bool exited;
    /* WAIT_DONE */
    uint64_t wait_id;
    bool cancelled;
} seen;

#define MAX_SEEN 32

static void copy_str(char *dst, size_t cap, const char *src, size_t len) {
    REQUIRE(src != NULL);
    REQUIRE(strlen(src) == len);
    REQUIRE(len < cap);
    memcpy(dst, src, len + 1);
}

/* Drains the table into `out`; returns how many outputs there were. */
static size_t drain(berth_task_table *t, seen *out) {
    size_t n = 0;
    for (;;) {
        berth_task_output o;
        REQUIRE(berth_task_poll(t, &o) == BERTH_OK);
        if (o.kind == BERTH_TASK_OUTPUT_NONE) {
            return n;
        }
        REQUIRE(n < MAX_SEEN);
        seen *s = &out[n++];
        memset(s, 0, sizeof *s);
        s->kind = o.kind;
        if (o.kind == BERTH_TASK_OUTPUT_EVENT) {
            const berth_task_event *e = &o.event;
            s->event = e->kind;
            copy_str(s->topic, sizeof s->topic, e->topic, e->topic_len);
            copy_str(s->ns, sizeof s->ns, e->namespace_name, e->namespace_len);
            copy_str(s->container, sizeof s->container, e->container_id, e->container_id_len);
            copy_str(s->id, sizeof s->id, e->id, e->id_len);
            copy_str(s->bundle, sizeof s->bundle, e->bundle, e->bundle_len);
            copy_str(s->stdin_path, sizeof s->stdin_path, e->stdin_path, e->stdin_len);
            s->pid = e->pid;
            s->exit_status = e->exit_status;
            s->exited_at_ns = e->exited_at_ns;
            s->terminal = e->terminal;
            s->rootfs_len = e->rootfs_len;
        } else if (o.kind == BERTH_TASK_OUTPUT_DONE) {
            const berth_task_done *d = &o.done;
            s->call_id = d->call_id;
            s->result = d->result;
            s->grpc_code = d->grpc_code;
            copy_str(s->error, sizeof s->error, d->error, d->error_len);
            s->reply = d->reply;
            s->pid = d->pid;
            copy_str(s->id, sizeof s->id, d->id, d->id_len);
            s->exited = d->exited;
            s->exit_status = d->exit_status;
            s->exited_at_ns = d->exited_at_ns;
        } else {
            REQUIRE(o.kind == BERTH_TASK_OUTPUT_WAIT_DONE);
            s->wait_id = o.wait.wait_id;
            s->cancelled = o.wait.cancelled;
            s->exit_status = o.wait.exit_status;
            s->exited_at_ns = o.wait.exited_at_ns;
        }
    }
}

/* The table as JSON, malloc'd. */
static char *save(const berth_task_table *t) {
    size_t need = 0;
    REQUIRE(berth_task_table_save(t, NULL, 0, &need) == BERTH_ERR_BUFFER_TOO_SMALL);
    char *buf = malloc(need + 1);
    REQUIRE(buf != NULL);
    size_t written = 0;
    REQUIRE(berth_task_table_save(t, buf, need + 1, &written) == BERTH_OK);
    REQUIRE(written == need && strlen(buf) == need);
    return buf;
}

static const char *last_error(const berth_task_table *t) {
    static char buf[512];
    size_t written = 0;
    REQUIRE(berth_task_table_last_error(t, buf, sizeof buf, &written) == BERTH_OK);
    return buf;
}

static uint32_t last_code(const berth_task_table *t) {
    uint32_t code = 0;
    REQUIRE(berth_task_table_last_error_code(t, &code) == BERTH_OK);
    return code;
}

/* A refused call: its result, its gRPC code, a message with `needle`, and the table
 * unchanged (same JSON, nothing to poll). */
#define CHECK_REFUSED(t, expr, want, grpc, needle)                                           \
    do {                                                                                     \
        char *before_ = save(t);                                                             \
        CHECK_RESULT((expr), (want));                                                        \
        CHECK(last_code(t) == (grpc));                                                       \
        const char *err_ = last_error(t);                                                    \
        checks++;                                                                            \
        if (strstr(err_, (needle)) == NULL) {                                                \
            fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n", __FILE__, \
                    __LINE__, err_, (needle));                                               \
            failures++;                                                                      \
        }                                                                                    \
        char *after_ = save(t);                                                              \
        CHECK_STR(after_, before_);                                                          \
        seen none_[MAX_SEEN];                                                                \
        CHECK(drain((t), none_) == 0);                                                       \
        free(before_);                                                                       \
        free(after_);                                                                        \
    } while (0)

static berth_task_table *new_table(void) {
    berth_task_table *t = NULL;
    REQUIRE(berth_task_table_new(&t) == BERTH_OK);
    REQUIRE(t != NULL);
    return t;
}

static const berth_task_stdio IO = {"/run/fifo/c1-stdin", "/run/fifo/c1-stdout",
                                    "/run/fifo/c1-stderr", false};

/* Creates task `id` (init pid `pid`) and reports the runtime's success. */
static void create_ok(berth_task_table *t, const char *id, uint32_t pid) {
    berth_task_call call;
    REQUIRE(berth_task_create(t, tick(), NS, id, true, "/run/berth/bundle", &IO, NULL, 0,
                              &call) == BERTH_OK);
    REQUIRE(call.kind == BERTH_TASK_CALL_CREATE);
    REQUIRE(berth_task_runtime_ok(t, tick(), call.id, pid) == BERTH_OK);
    seen out[MAX_SEEN];
    REQUIRE(drain(t, out) == 2);
}

static void start_ok(berth_task_table *t, const char *id, const char *exec, uint32_t pid) {
    berth_task_call call;
    REQUIRE(berth_task_start(t, tick(), NS, id, exec, &call) == BERTH_OK);
    REQUIRE(call.kind == BERTH_TASK_CALL_START);
    REQUIRE(berth_task_runtime_ok(t, tick(), call.id, pid) == BERTH_OK);
    seen out[MAX_SEEN];
    REQUIRE(drain(t, out) >= 2);
}

static berth_task_process get(berth_task_table *t, const char *id, const char *exec) {
    berth_task_process p;
    REQUIRE(berth_task_get(t, NS, id, exec, &p) == BERTH_OK);
    return p;
}

/* ---- ctr run --rm ------------------------------------------------------------------------- */

static void test_ctr_run_rm(void) {
    berth_task_table *t = new_table();
    seen out[MAX_SEEN];

    /* Tasks.Create, with the rootfs as the snapshotter handed it out. */
    const char *opts[] = {"rw", "rbind", NULL};
    berth_mount rootfs = {0};
    rootfs.type = "bind";
    rootfs.source = "/var/lib/berth/snapshots/1/fs";
    rootfs.target = NULL;
    rootfs.options = opts;
    rootfs.options_len = 2;
    berth_task_call call;
    CHECK_RESULT(berth_task_create(t, tick(), NS, "c1", true, "/run/berth/default/c1", &IO,
                                   &rootfs, 1, &call),
                 BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_CREATE);
    CHECK_STR(call.namespace_name, NS);
    CHECK_STR(call.container_id, "c1");
    CHECK(call.container_id_len == 2);
    CHECK_STR(call.exec_id, "");
    CHECK_STR(call.bundle, "/run/berth/default/c1");
    CHECK_STR(call.stdin_path, "/run/fifo/c1-stdin");
    CHECK_STR(call.stderr_path, "/run/fifo/c1-stderr");
    CHECK(call.rootfs_len == 1);
    uint64_t create_id = call.id;
    /* Invisible until the runtime confirms. */
    berth_task_process p;
    CHECK_RESULT(berth_task_get(t, NS, "c1", NULL, &p), BERTH_ERR_NOT_FOUND);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), create_id, 4242), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].kind == BERTH_TASK_OUTPUT_EVENT && out[0].event == BERTH_TASK_EVENT_CREATE);
    CHECK_STR(out[0].topic, "/tasks/create");
    CHECK_STR(out[0].ns, NS);
    CHECK_STR(out[0].container, "c1");
    CHECK_STR(out[0].bundle, "/run/berth/default/c1");
    CHECK_STR(out[0].stdin_path, "/run/fifo/c1-stdin");
    CHECK(out[0].pid == 4242 && out[0].rootfs_len == 1 && !out[0].terminal);
    CHECK(out[1].kind == BERTH_TASK_OUTPUT_DONE && out[1].call_id == create_id);
    CHECK(out[1].result == BERTH_OK && out[1].reply == BERTH_TASK_REPLY_CREATED);
    CHECK(out[1].pid == 4242 && out[1].grpc_code == 0);
    p = get(t, "c1", NULL);
    CHECK(p.status == BERTH_TASK_CREATED && p.pid == 4242 && !p.exited);
    CHECK_STR(p.id, "c1");
    CHECK_STR(berth_task_status_name(p.status), "created");

    /* Tasks.Wait before Start: registered. */
    berth_task_wait_answer w;
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "c1", NULL, &w), BERTH_OK);
    CHECK(w.waiting && w.wait_id != 0);

    /* Tasks.Start. */
    CHECK_RESULT(berth_task_start(t, tick(), NS, "c1", "", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_START);
    uint64_t start_id = call.id;
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), start_id, 4242), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_START && out[0].pid == 4242);
    CHECK_STR(out[0].topic, "/tasks/start");
    CHECK(out[1].call_id == start_id && out[1].reply == BERTH_TASK_REPLY_STARTED);
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_RUNNING);

    /* A signal forwarded while it runs; stdin's EOF. */
    CHECK_RESULT(berth_task_kill(t, tick(), NS, "c1", NULL, 15, false, &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_KILL && call.signal == 15 && !call.all);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 1 && out[0].reply == BERTH_TASK_REPLY_EMPTY);
    CHECK_RESULT(berth_task_close_io(t, tick(), NS, "c1", NULL, true, &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_CLOSE_STDIN);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 1);

    /* The process exits with 3: the exit event, then the Wait's answer. */
    uint64_t exited_at = tick();
    CHECK_RESULT(berth_task_exited(t, tick(), NS, "c1", NULL, 4242, 3, exited_at), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_EXIT);
    CHECK_STR(out[0].topic, "/tasks/exit");
    CHECK_STR(out[0].id, "c1");
    CHECK(out[0].pid == 4242 && out[0].exit_status == 3 && out[0].exited_at_ns == exited_at);
    CHECK(out[1].kind == BERTH_TASK_OUTPUT_WAIT_DONE && out[1].wait_id == w.wait_id);
    CHECK(!out[1].cancelled && out[1].exit_status == 3 && out[1].exited_at_ns == exited_at);

    /* Tasks.Get: stopped. A Wait now answers at once. */
    p = get(t, "c1", NULL);
    CHECK(p.status == BERTH_TASK_STOPPED && p.exited && p.exit_status == 3);
    CHECK(p.exited_at_ns == exited_at);
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "c1", NULL, &w), BERTH_OK);
    CHECK(!w.waiting && w.exit_status == 3 && w.exited_at_ns == exited_at);

    /* Tasks.Delete: the exit status comes back. */
    CHECK_RESULT(berth_task_delete(t, tick(), NS, "c1", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_DELETE);
    uint64_t delete_id = call.id;
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), delete_id, 0), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_DELETE);
    CHECK_STR(out[0].topic, "/tasks/delete");
    CHECK_STR(out[0].id, "c1");
    CHECK(out[0].pid == 4242 && out[0].exit_status == 3 && out[0].exited_at_ns == exited_at);
    CHECK(out[1].call_id == delete_id && out[1].reply == BERTH_TASK_REPLY_DELETED);
    CHECK_STR(out[1].id, "c1");
    CHECK(out[1].exited && out[1].exit_status == 3 && out[1].exited_at_ns == exited_at);

    /* ctr's deferred Get: no task. */
    CHECK_REFUSED(t, berth_task_get(t, NS, "c1", NULL, &p), BERTH_ERR_NOT_FOUND, 5,
                  "task c1 not found");
    berth_task_table_free(t);
}

/* ---- ctr tasks exec ----------------------------------------------------------------------- */

static void test_ctr_tasks_exec(void) {
    berth_task_table *t = new_table();
    seen out[MAX_SEEN];
    berth_task_call call;
    create_ok(t, "c1", 100);
    start_ok(t, "c1", NULL, 100);

    const char spec[] = "{\"args\":[\"sh\"],\"terminal\":true}";
    const berth_task_stdio tio = {"/run/fifo/e1-stdin", "/run/fifo/e1-stdout", NULL, true};
    CHECK_RESULT(berth_task_exec(t, tick(), NS, "c1", "e1", &tio, (const uint8_t *)spec,
                                 strlen(spec), &call),
                 BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_EXEC && call.terminal);
    CHECK_STR(call.exec_id, "e1");
    CHECK_STR(call.stderr_path, "");
    CHECK(call.spec_len == strlen(spec) && memcmp(call.spec, spec, call.spec_len) == 0);
    uint64_t exec_id = call.id;
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), exec_id, 0), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_EXEC_ADDED);
    CHECK_STR(out[0].topic, "/tasks/exec-added");
    CHECK_STR(out[0].id, "e1");
    CHECK(out[1].call_id == exec_id && out[1].result == BERTH_OK);
    berth_task_process p = get(t, "c1", "e1");
    CHECK(p.status == BERTH_TASK_CREATED && p.pid == 0 && p.terminal);
    CHECK_STR(p.id, "e1");

    /* Wait issued before Start, as ctr does. */
    berth_task_wait_answer w;
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "c1", "e1", &w), BERTH_OK);
    CHECK(w.waiting);

    CHECK_RESULT(berth_task_start(t, tick(), NS, "c1", "e1", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_START);
    CHECK_STR(call.exec_id, "e1");
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 200), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_EXEC_STARTED && out[0].pid == 200);
    CHECK_STR(out[0].id, "e1");
    CHECK(out[1].reply == BERTH_TASK_REPLY_STARTED && out[1].pid == 200);

    /* ResizePty (it has a terminal) and CloseIO. */
    CHECK_RESULT(berth_task_resize_pty(t, tick(), NS, "c1", "e1", 120, 40, &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_RESIZE && call.width == 120 && call.height == 40);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 1);
    CHECK_RESULT(berth_task_close_io(t, tick(), NS, "c1", "e1", false, &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_NONE);
    /* The init has no terminal: nothing to resize. */
    CHECK_RESULT(berth_task_resize_pty(t, tick(), NS, "c1", NULL, 80, 24, &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_NONE);

    CHECK_REFUSED(t, berth_task_delete_process(t, tick(), NS, "c1", "e1", &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "it is running");

    /* It exits 3: /tasks/exit with id e1, the Wait answered; the task runs on. */
    uint64_t at = tick();
    CHECK_RESULT(berth_task_exited(t, tick(), NS, "c1", "e1", 200, 3, at), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_EXIT && out[0].pid == 200 && out[0].exit_status == 3);
    CHECK_STR(out[0].id, "e1");
    CHECK_STR(out[0].container, "c1");
    CHECK(out[1].kind == BERTH_TASK_OUTPUT_WAIT_DONE && out[1].wait_id == w.wait_id);
    CHECK(out[1].exit_status == 3);
    CHECK(get(t, "c1", "e1").status == BERTH_TASK_STOPPED);
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_RUNNING);

    /* Tasks.DeleteProcess: the exit comes back, no event. */
    CHECK_RESULT(berth_task_delete_process(t, tick(), NS, "c1", "e1", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_DELETE_PROCESS);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 1);
    CHECK(out[0].kind == BERTH_TASK_OUTPUT_DONE && out[0].reply == BERTH_TASK_REPLY_DELETED);
    CHECK_STR(out[0].id, "e1");
    CHECK(out[0].pid == 200 && out[0].exited && out[0].exit_status == 3 &&
          out[0].exited_at_ns == at);
    CHECK_REFUSED(t, berth_task_get(t, NS, "c1", "e1", &p), BERTH_ERR_NOT_FOUND, 5,
                  "process e1 of task c1 not found");

    /* An exec never started: DeleteProcess cancels its Wait. */
    CHECK_RESULT(berth_task_exec(t, tick(), NS, "c1", "e2", NULL, NULL, 0, &call), BERTH_OK);
    CHECK(call.spec == NULL && call.spec_len == 0);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    drain(t, out);
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "c1", "e2", &w), BERTH_OK);
    CHECK_RESULT(berth_task_delete_process(t, tick(), NS, "c1", "e2", &call), BERTH_OK);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].kind == BERTH_TASK_OUTPUT_WAIT_DONE && out[0].cancelled);
    CHECK(out[1].reply == BERTH_TASK_REPLY_DELETED && !out[1].exited && out[1].pid == 0);
    berth_task_table_free(t);
}

/* ---- pause and resume --------------------------------------------------------------------- */

static void test_pause_resume(void) {
    berth_task_table *t = new_table();
    seen out[MAX_SEEN];
    berth_task_call call;
    create_ok(t, "c1", 100);
    CHECK_REFUSED(t, berth_task_pause(t, tick(), NS, "c1", &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "cannot pause task \"c1\": it is created");
    start_ok(t, "c1", NULL, 100);
    CHECK_REFUSED(t, berth_task_resume(t, tick(), NS, "c1", &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "it is running");

    CHECK_RESULT(berth_task_pause(t, tick(), NS, "c1", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_PAUSE);
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_PAUSING);
    CHECK_REFUSED(t, berth_task_pause(t, tick(), NS, "c1", &call), BERTH_ERR_BUSY, 14,
                  "is busy: its pause is in progress");
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_PAUSED);
    CHECK_STR(out[0].topic, "/tasks/paused");
    CHECK_STR(out[0].container, "c1");
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_PAUSED);
    CHECK_STR(berth_task_status_name(BERTH_TASK_PAUSED), "paused");
    CHECK_REFUSED(t, berth_task_delete(t, tick(), NS, "c1", &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "it is paused");
    CHECK_REFUSED(t, berth_task_exec(t, tick(), NS, "c1", "e1", NULL, NULL, 0, &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "cannot exec");

    CHECK_RESULT(berth_task_resume(t, tick(), NS, "c1", &call), BERTH_OK);
    CHECK(call.kind == BERTH_TASK_CALL_RESUME);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 2);
    CHECK(out[0].event == BERTH_TASK_EVENT_RESUMED);
    CHECK_STR(out[0].topic, "/tasks/resumed");
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_RUNNING);
    berth_task_table_free(t);
}

/* ---- failures, crashes, OOM --------------------------------------------------------------- */

static void test_runtime_failures(void) {
    berth_task_table *t = new_table();
    seen out[MAX_SEEN];
    berth_task_call call;

    /* A failed create leaves nothing, publishes nothing. */
    CHECK_RESULT(berth_task_create(t, tick(), NS, "c1", true, "/b", NULL, NULL, 0, &call),
                 BERTH_OK);
    CHECK_RESULT(berth_task_runtime_failed(t, tick(), call.id, 99, "x"), BERTH_ERR_INVALID);
    CHECK_RESULT(berth_task_runtime_failed(t, tick(), call.id, 13, "runc: exit status 1"),
                 BERTH_OK);
    CHECK(drain(t, out) == 1);
    CHECK(out[0].kind == BERTH_TASK_OUTPUT_DONE && out[0].result == BERTH_ERR_IO);
    CHECK(out[0].grpc_code == 13);
    CHECK_STR(out[0].error, "create of task \"c1\" failed: runc: exit status 1");
    berth_task_process p;
    CHECK_RESULT(berth_task_get(t, NS, "c1", NULL, &p), BERTH_ERR_NOT_FOUND);

    /* UNAVAILABLE from the runtime: a failed start leaves the task created. */
    create_ok(t, "c1", 100);
    CHECK_RESULT(berth_task_start(t, tick(), NS, "c1", NULL, &call), BERTH_OK);
    CHECK_RESULT(berth_task_runtime_failed(t, tick(), call.id, 14, NULL), BERTH_OK);
    CHECK(drain(t, out) == 1 && out[0].result == BERTH_ERR_BUSY && out[0].grpc_code == 14);
    CHECK(get(t, "c1", NULL).status == BERTH_TASK_CREATED);

    /* Deleting a created task kills its init: exit 137, then delete. */
    berth_task_wait_answer w;
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "c1", NULL, &w), BERTH_OK);
    CHECK_RESULT(berth_task_delete(t, tick(), NS, "c1", &call), BERTH_OK);
    uint64_t at = tick();
    CHECK_RESULT(berth_task_runtime_ok(t, at, call.id, 0), BERTH_OK);
    CHECK(drain(t, out) == 4);
    CHECK(out[0].event == BERTH_TASK_EVENT_EXIT && out[0].exit_status == 137);
    CHECK(out[1].kind == BERTH_TASK_OUTPUT_WAIT_DONE && out[1].exit_status == 137);
    CHECK(out[2].event == BERTH_TASK_EVENT_DELETE && out[2].exit_status == 137);
    CHECK(out[2].exited_at_ns == at);
    CHECK(out[3].reply == BERTH_TASK_REPLY_DELETED && out[3].exit_status == 137);

    /* A runtime crash: pending calls fail, running processes exit with 255. */
    create_ok(t, "c2", 300);
    start_ok(t, "c2", NULL, 300);
    CHECK_RESULT(berth_task_exec(t, tick(), NS, "c2", "e1", NULL, NULL, 0, &call), BERTH_OK);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    drain(t, out);
    start_ok(t, "c2", "e1", 301);
    CHECK_RESULT(berth_task_pause(t, tick(), NS, "c2", &call), BERTH_OK);
    uint64_t pause_id = call.id;
    CHECK_RESULT(berth_task_oom(t, NS, "c2"), BERTH_OK);
    CHECK(drain(t, out) == 1 && out[0].event == BERTH_TASK_EVENT_OOM);
    CHECK_STR(out[0].topic, "/tasks/oom");
    at = tick();
    CHECK_RESULT(berth_task_runtime_crashed(t, at, NS, "c2"), BERTH_OK);
    CHECK(drain(t, out) == 3);
    CHECK(out[0].kind == BERTH_TASK_OUTPUT_DONE && out[0].call_id == pause_id);
    CHECK(out[0].result == BERTH_ERR_BUSY && out[0].grpc_code == 14);
    CHECK(out[1].event == BERTH_TASK_EVENT_EXIT && out[1].exit_status == 255);
    CHECK_STR(out[1].id, "e1");
    CHECK(out[2].event == BERTH_TASK_EVENT_EXIT && out[2].exit_status == 255);
    CHECK_STR(out[2].id, "c2");
    CHECK(out[2].exited_at_ns == at);
    /* The runtime's late answer, and driver mistakes. */
    CHECK_REFUSED(t, berth_task_runtime_ok(t, tick(), pause_id, 0),
                  BERTH_ERR_UNEXPECTED_COMPLETION, 13, "is pending");
    CHECK_RESULT(berth_task_delete(t, tick(), NS, "c2", &call), BERTH_OK);
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    drain(t, out);
    CHECK_REFUSED(t, berth_task_exited(t, tick(), NS, "c2", "e1", 301, 0, tick()),
                  BERTH_ERR_NOT_FOUND, 5, "task c2 not found");
    create_ok(t, "c3", 500);
    CHECK_REFUSED(t, berth_task_exited(t, tick(), NS, "c3", NULL, 501, 0, tick()),
                  BERTH_ERR_PROTOCOL, 13, "its pid is 500");
    CHECK_RESULT(berth_task_start(t, tick(), NS, "c3", NULL, &call), BERTH_OK);
    CHECK_REFUSED(t, berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_ERR_PROTOCOL, 13,
                  "without a pid");
    berth_task_table_free(t);
}

/* ---- error paths -------------------------------------------------------------------------- */

static bool count_task(void *userdata, const berth_task_process *p) {
    int *n = userdata;
    (*n)++;
    return strcmp(p->id, "a") == 0; /* stop after "b" */
}

static void test_errors(void) {
    berth_task_table *t = new_table();
    berth_task_call call;
    berth_task_wait_answer w;

    CHECK_REFUSED(t, berth_task_start(t, tick(), NS, "c9", NULL, &call), BERTH_ERR_NOT_FOUND,
                  5, "task c9 not found");
    CHECK_REFUSED(t, berth_task_wait(t, tick(), NS, "c9", NULL, &w), BERTH_ERR_NOT_FOUND, 5,
                  "task c9 not found");
    CHECK_REFUSED(t, berth_task_kill(t, tick(), NS, "c9", NULL, 9, true, &call),
                  BERTH_ERR_NOT_FOUND, 5, "task c9 not found");
    CHECK_REFUSED(t,
                  berth_task_create(t, tick(), NS, "c1", false, "/b", NULL, NULL, 0, &call),
                  BERTH_ERR_NOT_FOUND, 5, "container \"c1\" in namespace \"default\": not found");
    CHECK_REFUSED(t, berth_task_create(t, tick(), NS, "", true, "/b", NULL, NULL, 0, &call),
                  BERTH_ERR_INVALID, 3, "container id must not be empty");

    create_ok(t, "a", 10);
    CHECK_REFUSED(t, berth_task_create(t, tick(), NS, "a", true, "/b", NULL, NULL, 0, &call),
                  BERTH_ERR_ALREADY_EXISTS, 6, "task a: already exists");
    CHECK_REFUSED(t, berth_task_exec(t, tick(), NS, "a", NULL, NULL, NULL, 0, &call),
                  BERTH_ERR_INVALID, 3, "exec id cannot be empty");
    CHECK_REFUSED(t, berth_task_delete_process(t, tick(), NS, "a", "", &call),
                  BERTH_ERR_INVALID, 3, "exec id cannot be empty");
    CHECK_REFUSED(t, berth_task_start(t, tick(), NS, "a", "e9", &call), BERTH_ERR_NOT_FOUND, 5,
                  "process e9 of task a not found");
    CHECK_RESULT(berth_task_exec(t, tick(), NS, "a", "e1", NULL, NULL, 0, &call), BERTH_OK);
    CHECK_REFUSED(t, berth_task_exec(t, tick(), NS, "a", "e1", NULL, NULL, 0, &call),
                  BERTH_ERR_ALREADY_EXISTS, 6, "already exists");
    CHECK_REFUSED(t, berth_task_delete(t, tick(), NS, "a", &call), BERTH_ERR_BUSY, 14,
                  "its exec is in progress");
    CHECK_RESULT(berth_task_runtime_ok(t, tick(), call.id, 0), BERTH_OK);
    seen out[MAX_SEEN];
    drain(t, out);
    CHECK_REFUSED(t, berth_task_kill(t, tick(), NS, "a", "e1", 9, false, &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "it is created");
    start_ok(t, "a", NULL, 10);
    CHECK_REFUSED(t, berth_task_start(t, tick(), NS, "a", NULL, &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "cannot start task \"a\": it is running");
    CHECK_REFUSED(t, berth_task_delete(t, tick(), NS, "a", &call),
                  BERTH_ERR_FAILED_PRECONDITION, 9, "cannot delete task \"a\": it is running");
    CHECK_RESULT(berth_task_exited(t, tick(), NS, "a", NULL, 10, 0, tick()), BERTH_OK);
    drain(t, out);
    CHECK_REFUSED(t, berth_task_kill(t, tick(), NS, "a", NULL, 9, false, &call),
                  BERTH_ERR_NOT_FOUND, 5, "process already finished");
    CHECK_REFUSED(t, berth_task_exited(t, tick(), NS, "a", NULL, 10, 0, tick()),
                  BERTH_ERR_NOT_FOUND, 5, "process already finished");

    /* Tasks.List. */
    create_ok(t, "b", 20);
    create_ok(t, "c", 30);
    int n = 0;
    CHECK_RESULT(berth_task_list(t, NS, count_task, &n), BERTH_OK);
    CHECK(n == 2);
    n = 0;
    CHECK_RESULT(berth_task_list(t, "other", count_task, &n), BERTH_OK);
    CHECK(n == 0);

    /* Forgotten waits are never answered. */
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "b", NULL, &w), BERTH_OK);
    CHECK_RESULT(berth_task_forget_wait(t, w.wait_id), BERTH_OK);
    CHECK_RESULT(berth_task_forget_wait(t, w.wait_id), BERTH_ERR_NOT_FOUND);

    /* NULL arguments. */
    CHECK_RESULT(berth_task_start(NULL, tick(), NS, "a", NULL, &call), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_start(t, tick(), NULL, "a", NULL, &call), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_start(t, tick(), NS, NULL, NULL, &call), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_start(t, tick(), NS, "b", NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_get(t, NS, "a", NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_poll(t, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_list(t, NS, NULL, NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_table_new(NULL), BERTH_ERR_NULL);
    CHECK_RESULT(berth_task_create(t, tick(), NS, "z", true, "/b", NULL, NULL, 1, &call),
                 BERTH_ERR_NULL);
    const char bad[] = {(char)0xff, 0};
    CHECK_RESULT(berth_task_start(t, tick(), NS, bad, NULL, &call), BERTH_ERR_INVALID);
    /* Still nothing changed by those: "b" was never started. */
    CHECK(get(t, "b", NULL).status == BERTH_TASK_CREATED);
    CHECK_STR(berth_task_status_name(99), "unknown");
    berth_task_table_free(NULL);
    berth_task_recovery_free(NULL);
    berth_task_table_free(t);
}

/* ---- persistence and restart -------------------------------------------------------------- */

static void test_restart(void) {
    berth_task_table *t = new_table();
    seen out[MAX_SEEN];
    berth_task_call call;
    uint64_t gen0 = 0, gen1 = 0;
    CHECK_RESULT(berth_task_table_generation(t, &gen0), BERTH_OK);
    create_ok(t, "a", 10); /* started while berth was down */
    create_ok(t, "b", 20); /* exited while berth was down */
    start_ok(t, "b", NULL, 20);
    CHECK_RESULT(berth_task_table_generation(t, &gen1), BERTH_OK);
    CHECK(gen1 > gen0);
    berth_task_wait_answer w;
    CHECK_RESULT(berth_task_wait(t, tick(), NS, "b", NULL, &w), BERTH_OK);
    char *json = save(t);
    berth_task_table_free(t);

    t = new_table();
    CHECK_RESULT(berth_task_table_load(t, (const uint8_t *)json, strlen(json)), BERTH_OK);
    char *again = save(t);
    CHECK_STR(again, json);
    free(again);
    CHECK_RESULT(berth_task_table_load(t, (const uint8_t *)"{\"namespaces\":1}", 16),
                 BERTH_ERR_INVALID);
    CHECK(strstr(last_error(t), "does not load") != NULL);

    berth_task_found found[2] = {
        {NS, "a", NULL, 10, BERTH_TASK_FOUND_RUNNING},
        {NS, "zz", "", 99, BERTH_TASK_FOUND_CREATED},
    };
    berth_task_found bad = {NS, "a", NULL, 10, 7};
    berth_task_recovery *rec = NULL;
    CHECK_RESULT(berth_task_restarted(t, tick(), &bad, 1, &rec), BERTH_ERR_INVALID);
    CHECK(rec == NULL);
    CHECK_RESULT(berth_task_restarted(t, tick(), found, 2, &rec), BERTH_OK);
    REQUIRE(rec != NULL);
    CHECK(berth_task_recovery_len(rec) == 2);
    berth_task_recovered r;
    CHECK_RESULT(berth_task_recovery_get(rec, 0, &r), BERTH_OK);
    CHECK(r.kind == BERTH_TASK_RECOVERED_UNACCOUNTED && r.pid == 20);
    CHECK_STR(r.container_id, "b");
    CHECK_STR(r.exec_id, "");
    CHECK_RESULT(berth_task_recovery_get(rec, 1, &r), BERTH_OK);
    CHECK(r.kind == BERTH_TASK_RECOVERED_ORPHAN && r.pid == 99);
    CHECK_STR(r.container_id, "zz");
    CHECK_STR(r.namespace_name, NS);
    CHECK_RESULT(berth_task_recovery_get(rec, 2, &r), BERTH_ERR_INVALID);
    CHECK(drain(t, out) == 1);
    CHECK(out[0].event == BERTH_TASK_EVENT_START && out[0].pid == 10);
    CHECK_STR(out[0].container, "a");
    CHECK(get(t, "a", NULL).status == BERTH_TASK_RUNNING);
    /* The old daemon's Wait went with its client. */
    CHECK_RESULT(berth_task_forget_wait(t, w.wait_id), BERTH_ERR_NOT_FOUND);
    /* The host reports what it learnt of the unaccounted process. */
    CHECK_RESULT(berth_task_exited(t, tick(), NS, "b", NULL, 20, 0, tick()), BERTH_OK);
    CHECK(drain(t, out) == 1 && out[0].event == BERTH_TASK_EVENT_EXIT);
    CHECK(get(t, "b", NULL).status == BERTH_TASK_STOPPED);
    berth_task_recovery_free(rec);

    CHECK_RESULT(berth_task_delete(t, tick(), NS, "b", &call), BERTH_OK);
    /* The call can be read again while pending. */
    berth_task_call again_call;
    CHECK_RESULT(berth_task_pending_call(t, call.id, &again_call), BERTH_OK);
    CHECK(again_call.id == call.id && again_call.kind == BERTH_TASK_CALL_DELETE);
    CHECK_STR(again_call.container_id, "b");
    CHECK_RESULT(berth_task_pending_call(t, 9999, &again_call), BERTH_ERR_UNEXPECTED_COMPLETION);
    free(json);
    berth_task_table_free(t);
}

int main(void) {
    test_ctr_run_rm();
    test_ctr_tasks_exec();
    test_pause_resume();
    test_runtime_failures();
    test_errors();
    test_restart();
    return check_summary("test_task");
}
