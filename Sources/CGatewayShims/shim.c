#define _GNU_SOURCE
#include "CGatewayShims.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <linux/if_tun.h>

int CGatewayShims_tunOpen(const char *name, int multiQueue, char *nameOut) {
    int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return -errno;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    ifr.ifr_flags = IFF_TUN | IFF_NO_PI | (multiQueue ? IFF_MULTI_QUEUE : 0);
    if (name) strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
    if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (nameOut) memcpy(nameOut, ifr.ifr_name, IFNAMSIZ);
    return fd;
}

int CGatewayShims_peerCredentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return -errno;
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int CGatewayShims_ifnamsiz(void) { return IFNAMSIZ; }

int CGatewayShims_accept(int fd, void *addr, unsigned int *addrlen) {
    socklen_t len = addrlen ? *addrlen : 0;
    int c = accept4(fd, (struct sockaddr *)addr, addr ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return -errno;
    if (addrlen) *addrlen = len;
    return c;
}
