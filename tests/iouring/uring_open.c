/* Opens and reads a file through io_uring only (no open/read syscall on it):
 * the client of tests/e2e_iouring.rs. liburing (Debian liburing-dev).
 *
 *   uring_open MODE PATH
 *
 * MODE: inline  - IORING_OP_OPENAT, issued in the submitting task;
 *       async   - the same with IOSQE_ASYNC: run by an io-wq worker thread;
 *       openat2 - IORING_OP_OPENAT2;
 *       fixed   - IORING_OP_OPENAT into fixed-file slot 0 (file_index).
 * Prints "open=<cqe res> read=<bytes or -errno>" and exits 0 when the
 * io_uring calls themselves worked (whatever the open's result). With
 * URING_HOLD set, waits for end of input before exiting (so the agent can
 * read the file in this process's mount namespace). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <liburing.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int wait_one(struct io_uring *ring) {
    struct io_uring_cqe *cqe;
    int ret = io_uring_submit_and_wait(ring, 1);
    if (ret < 0) return ret;
    ret = io_uring_wait_cqe(ring, &cqe);
    if (ret < 0) return ret;
    int res = cqe->res;
    io_uring_cqe_seen(ring, cqe);
    return res;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s inline|async|openat2|fixed PATH\n", argv[0]);
        return 2;
    }
    const char *mode = argv[1], *path = argv[2];
    int fixed = strcmp(mode, "fixed") == 0;
    struct io_uring ring;
    int ret = io_uring_queue_init(8, &ring, 0);
    if (ret < 0) {
        fprintf(stderr, "io_uring_queue_init: %s\n", strerror(-ret));
        return 1;
    }
    if (fixed && (ret = io_uring_register_files_sparse(&ring, 4)) < 0) {
        fprintf(stderr, "register_files_sparse: %s\n", strerror(-ret));
        return 1;
    }
    struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC};
    if (strcmp(mode, "openat2") == 0)
        io_uring_prep_openat2(sqe, AT_FDCWD, path, &how);
    else if (fixed)
        io_uring_prep_openat_direct(sqe, AT_FDCWD, path, O_RDONLY, 0, 0);
    else
        io_uring_prep_openat(sqe, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
    if (strcmp(mode, "async") == 0) sqe->flags |= IOSQE_ASYNC;
    int opened = wait_one(&ring);
    int got = -EBADF;
    if (opened >= 0) {
        static char buf[4096];
        sqe = io_uring_get_sqe(&ring);
        io_uring_prep_read(sqe, fixed ? 0 : opened, buf, sizeof buf, 0);
        if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
        got = wait_one(&ring);
        sqe = io_uring_get_sqe(&ring);
        if (fixed)
            io_uring_prep_close_direct(sqe, 0);
        else
            io_uring_prep_close(sqe, opened);
        wait_one(&ring);
    }
    printf("open=%d read=%d\n", opened, got);
    fflush(stdout);
    if (getenv("URING_HOLD")) {
        char c;
        while (read(0, &c, 1) > 0) {
        }
    }
    io_uring_queue_exit(&ring);
    return 0;
}
