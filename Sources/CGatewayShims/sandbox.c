#define _GNU_SOURCE
#include "CGatewayShims.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <spawn.h>
#include <stddef.h>
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/audit.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>

extern char **environ;

// Why by hand: libseccomp would do the BPF assembly, but it is one more shared library
// in the image for ~60 lines of code, and the rules here are few and fixed. libcap is
// left out for the same reason (two system calls).

int CGatewayShims_dropPrivileges(uid_t uid, gid_t gid) {
    if (uid == 0) return -EINVAL;
    if (setgroups(1, &gid) < 0) return -errno;
    if (setresgid(gid, gid, gid) < 0) return -errno;
    // glibc applies set*id to every thread. Without PR_SET_KEEPCAPS (never set here) the
    // kernel clears the permitted, effective and ambient sets when no uid is 0 any more.
    if (setresuid(uid, uid, uid) < 0) return -errno;
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    return 0;
}

int CGatewayShims_keepCapabilities(uint64_t keep) {
    // The bounding set limits what a program this process starts (ip, nft) can have as
    // root. Dropping from it needs CAP_SETPCAP; without it the container's set applies.
    if (prctl(PR_CAPBSET_READ, CAP_SETPCAP, 0, 0, 0) == 1) {
        for (int cap = 0; cap <= 63; cap++) {
            if (keep & (1ULL << cap)) continue;
            if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 1) continue;
            if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 && errno != EINVAL && errno != EPERM) return -errno;
        }
    }
    struct __user_cap_header_struct header = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &header, data) < 0) return -errno;
    uint64_t permitted = ((uint64_t)data[1].permitted << 32) | data[0].permitted;
    uint64_t kept = keep & permitted;
    data[0].effective = data[0].permitted = (uint32_t)kept;
    data[1].effective = data[1].permitted = (uint32_t)(kept >> 32);
    data[0].inheritable = data[1].inheritable = 0;
    if (syscall(SYS_capset, &header, data) < 0) return -errno;
    return 0;
}

// --- the gateway's system-call allow-list -------------------------------------------

#if defined(__x86_64__)
#define GW_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define GW_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#define ARG_LO(n) (offsetof(struct seccomp_data, args) + 8 * (n))

// System calls the running gateway makes, hottest first (the kernel caches "always
// allow" per call number since 5.11, so order matters only on older kernels). Found by
// tracing the gateway through the integration tests (docs/architecture.md, "Least
// privilege"); anything not here fails with EPERM instead of running.
static const int allowed[] = {
    SYS_epoll_pwait,
#ifdef SYS_epoll_wait
    SYS_epoll_wait,
#endif
    SYS_read, SYS_write, SYS_readv, SYS_writev,
    SYS_recvmmsg, SYS_sendmmsg, SYS_recvfrom, SYS_sendto, SYS_recvmsg, SYS_sendmsg,
    SYS_clock_gettime, SYS_clock_nanosleep, SYS_nanosleep, SYS_gettimeofday,
    SYS_epoll_ctl, SYS_accept4, SYS_close, SYS_shutdown, SYS_connect,
    SYS_setsockopt, SYS_getsockopt, SYS_getsockname, SYS_getpeername,
    SYS_fcntl, SYS_timerfd_settime, SYS_timerfd_gettime,
    SYS_mmap, SYS_munmap, SYS_mremap, SYS_mprotect, SYS_madvise, SYS_brk,
    SYS_futex, SYS_getrandom, SYS_sched_yield, SYS_getpid, SYS_gettid,
    SYS_newfstatat, SYS_fstat, SYS_statx, SYS_lseek, SYS_pread64, SYS_getdents64, SYS_readlinkat,
    SYS_unlinkat, // the control socket, removed at stop
    SYS_rt_sigprocmask, SYS_rt_sigaction, SYS_rt_sigreturn, SYS_rt_sigpending, SYS_rt_sigtimedwait, SYS_sigaltstack, SYS_tgkill,
    SYS_prlimit64, SYS_uname, SYS_getuid, SYS_geteuid, SYS_getgid, SYS_getegid,
    SYS_restart_syscall, SYS_exit, SYS_exit_group, SYS_membarrier, SYS_rseq,
#ifdef SYS_stat
    SYS_stat, SYS_lstat,
#endif
#ifdef SYS_readlink
    SYS_readlink, SYS_unlink, SYS_poll,
#endif
};

int CGatewayShims_installSyscallFilter(void) {
#ifndef GW_AUDIT_ARCH
    return -ENOSYS;
#else
    enum { N = sizeof allowed / sizeof allowed[0] };
    struct sock_filter f[16 + 2 * N + 16];
    int i = 0;
    const unsigned int deny = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
    // A call made with another architecture's numbers (e.g. int 0x80 on x86_64) would
    // slip past a list of this architecture's numbers: kill it outright.
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, GW_AUDIT_ARCH, 1, 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
#if defined(__x86_64__)
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1); // x32 ABI
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
    for (int k = 0; k < N; k++) {
        f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)allowed[k], 0, 1);
        f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    // socket(): only the families the gateway speaks (the auth plugin's Unix socket;
    // never netlink or packet sockets, which would reach routes and raw frames).
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, 0, 6);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(0));
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 3, 0);
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 2, 0);
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 1, 0);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    // openat(): read-only. The gateway re-reads its settings and certificate on SIGHUP
    // and writes no file at all.
    const unsigned int writing = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_openat, 0, 4);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO(2));
    f[i++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, writing, 0, 1);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[i++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, deny);

    struct sock_fprog prog = {.len = (unsigned short)i, .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) return -errno;
    // TSYNC: every thread of the process gets the filter, not just this one.
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog) != 0) return -errno;
    return 0;
#endif
}

int CGatewayShims_spawnWithDescriptor(const char *path, char *const argv[], int fd) {
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fd, 3);
    posix_spawn_file_actions_addclosefrom_np(&fa, 4);
    posix_spawnattr_init(&attr);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigfillset(&defaults);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    return rc == 0 ? (int)pid : -rc;
}
