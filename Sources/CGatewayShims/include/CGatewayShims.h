// Linux calls whose argument structs are unions or macros Swift imports poorly
// (struct ifreq, SO_PEERCRED's struct ucred). Kept tiny on purpose.
#ifndef CGATEWAYSHIMS_H
#define CGATEWAYSHIMS_H
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <signal.h>
#include <netinet/tcp.h>

/// Opens /dev/net/tun and attaches it to interface `name` (created if absent) as a
/// layer-3 device without packet-info header. `multiQueue` adds IFF_MULTI_QUEUE.
/// Writes the kernel's chosen name (IFNAMSIZ bytes) to `nameOut`. Returns the fd or -errno.
int CGatewayShims_tunOpen(const char *name, int multiQueue, char *nameOut);

/// Like CGatewayShims_tunOpen, and when `offload` is set also asks for a 10-byte
/// virtio_net_hdr on every packet (IFF_VNET_HDR) with checksum and TCPv4 segmentation
/// offload. Sets *offloadOut to 1 if that took effect (0 means a plain TUN: the kernel
/// refused the offload and the device was reopened without it).
int CGatewayShims_tunOpenOffload(const char *name, int offload, char *nameOut, int *offloadOut);

/// Peer credentials of a connected AF_UNIX socket. Returns 0 or -errno.
int CGatewayShims_peerCredentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// accept4(fd, addr, len, SOCK_NONBLOCK|SOCK_CLOEXEC); returns the fd or -errno.
/// (accept4 is a GNU extension Swift's Glibc module does not expose.)
int CGatewayShims_accept(int fd, void *addr, unsigned int *addrlen);

/// One datagram of a batch for recvmmsg/sendmmsg (struct mmsghdr needs _GNU_SOURCE,
/// which Swift's Glibc module is not built with).
typedef struct {
    void *buf;
    unsigned int cap;       /* buffer size, for receive */
    unsigned int len;       /* bytes received / to send */
    struct sockaddr_storage addr;
    unsigned int addrlen;
} CGatewayShims_Datagram;

/// recvmmsg(MSG_DONTWAIT) into up to n datagrams. Returns the count or -errno.
int CGatewayShims_recvBatch(int fd, CGatewayShims_Datagram *d, int n);

/// One outgoing datagram stored at `offset` in a shared arena.
typedef struct {
    unsigned int offset;
    unsigned int len;
    struct sockaddr_storage addr;
    unsigned int addrlen;
} CGatewayShims_OutDatagram;

/// Sends n datagrams from `arena` with sendmmsg. When `*gso` is set, runs of datagrams
/// to the same address that are contiguous in the arena and of equal size (the last
/// may be shorter) go out as one UDP GSO send (UDP_SEGMENT): one trip through the
/// stack for up to 64 datagrams. If the kernel refuses GSO, *gso is cleared and the
/// rest goes out one by one. Returns the datagrams handed to the kernel (the rest
/// were dropped because the socket buffer was full) or -errno.
int CGatewayShims_sendDatagrams(int fd, const unsigned char *arena, const CGatewayShims_OutDatagram *d, int n, int *gso);

/// Runs the program at `path` with `argv` (NULL-terminated; no shell, no PATH search),
/// `input` on its stdin (none when NULL), stdout discarded, and the first `errCap` bytes
/// of its stderr in `errBuf` (`*errLen` of them). Waits for it and returns its exit
/// status, 128 + the signal that killed it, or -errno when it could not be started.
int CGatewayShims_runTool(const char *path, char *const argv[], const unsigned char *input,
                          size_t inputLen, char *errBuf, size_t errCap, size_t *errLen);

/// Least privilege for the internet-facing process (sandbox.c). Sets every uid to `uid`
/// and every gid to `gid` (the only supplementary group), which clears all capabilities,
/// then sets no_new_privs. Refuses uid 0. Returns 0 or -errno.
int CGatewayShims_dropPrivileges(uid_t uid, gid_t gid);

/// Keeps only the capabilities in the `keep` bit mask (bit n = capability n) in the
/// effective and permitted sets, clears the inheritable set, and drops the others from
/// the bounding set when CAP_SETPCAP allows. Returns 0 or -errno.
int CGatewayShims_keepCapabilities(uint64_t keep);

/// Installs the gateway's system-call allow-list on every thread: anything else fails
/// with EPERM; socket() only for AF_UNIX/AF_INET/AF_INET6; openat() only read-only;
/// another architecture's calling convention kills the process. Returns 0 or -errno.
int CGatewayShims_installSyscallFilter(void);

/// posix_spawn of `path` with `argv`, default signal handling, and `fd` as descriptor 3
/// (every other descriptor above 2 closed). Returns the child's pid or -errno.
int CGatewayShims_spawnWithDescriptor(const char *path, char *const argv[], int fd);

/// The size of IFNAMSIZ, for buffers.
int CGatewayShims_ifnamsiz(void);
#endif
