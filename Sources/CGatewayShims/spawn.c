#define _GNU_SOURCE
#include "CGatewayShims.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

extern char **environ;

// Why not Foundation's Process: it scans /proc/self/fd and adds a close action for every
// descriptor it finds, which fails with EBADF when a tool such as valgrind holds
// descriptors the process may not close; it also starts a monitoring thread. Every
// descriptor this project opens is O_CLOEXEC, and closefrom(3) in the child covers any a
// library might leak, so a plain posix_spawn is all the start-up plumbing needs.
int CGatewayShims_runTool(const char *path, char *const argv[], const unsigned char *input,
                          size_t inputLen, char *errBuf, size_t errCap, size_t *errLen) {
    *errLen = 0;
    int in[2], err[2];
    if (pipe2(in, O_CLOEXEC) < 0) return -errno;
    if (pipe2(err, O_CLOEXEC) < 0) {
        int e = errno;
        close(in[0]);
        close(in[1]);
        return -e;
    }
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, err[1], 2);
    posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    posix_spawnattr_init(&attr);
    // The caller ignores SIGPIPE and may block signals; the tool gets the defaults.
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    close(err[1]);
    if (rc != 0) {
        close(in[1]);
        close(err[0]);
        return -rc;
    }

    // A tool that exits without reading all its input must not kill the caller with
    // SIGPIPE: block it on this thread while writing and consume one that arrived.
    sigset_t pipeSet, oldMask, pendingBefore;
    sigemptyset(&pipeSet);
    sigaddset(&pipeSet, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipeSet, &oldMask);
    sigpending(&pendingBefore);

    // Feed stdin and drain stderr together, so neither pipe can fill and stall the other.
    int wfd = in[1], rfd = err[0];
    size_t off = 0;
    if (input == NULL || inputLen == 0) {
        close(wfd);
        wfd = -1;
    } else {
        fcntl(wfd, F_SETFL, fcntl(wfd, F_GETFL) | O_NONBLOCK);
    }
    char scratch[512];
    while (wfd >= 0 || rfd >= 0) {
        struct pollfd p[2];
        int n = 0;
        if (wfd >= 0) p[n++] = (struct pollfd){.fd = wfd, .events = POLLOUT};
        if (rfd >= 0) p[n++] = (struct pollfd){.fd = rfd, .events = POLLIN};
        if (poll(p, n, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        for (int i = 0; i < n; i++) {
            if (p[i].revents == 0) continue;
            if (p[i].fd == wfd) {
                ssize_t w = write(wfd, input + off, inputLen - off);
                if (w > 0) off += (size_t)w;
                // EPIPE: the tool stopped reading; its exit status says why.
                if (off == inputLen || (w < 0 && errno != EAGAIN && errno != EINTR)) {
                    close(wfd);
                    wfd = -1;
                }
            } else if (p[i].fd == rfd) {
                // Keep the first errCap bytes of stderr; read and drop the rest.
                ssize_t r = *errLen < errCap ? read(rfd, errBuf + *errLen, errCap - *errLen)
                                             : read(rfd, scratch, sizeof scratch);
                if (r > 0 && *errLen < errCap) *errLen += (size_t)r;
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    close(rfd);
                    rfd = -1;
                }
            }
        }
    }
    if (wfd >= 0) close(wfd);
    if (rfd >= 0) close(rfd);
    if (!sigismember(&pendingBefore, SIGPIPE)) {
        sigset_t pending;
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) {
            struct timespec zero = {0, 0};
            sigtimedwait(&pipeSet, NULL, &zero);
        }
    }
    pthread_sigmask(SIG_SETMASK, &oldMask, NULL);

    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) return -errno;
    }
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return 255;
}
