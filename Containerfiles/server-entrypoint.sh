#!/bin/sh
# Entry point of the mstunnel-server image: make sure the TUN device node exists (some
# hosts load the module but have no /dev/net/tun in the container), then become the
# gateway. Creating the node needs CAP_MKNOD, which the compose file does not grant; when
# the node is missing and cannot be made, say so in one line and what to do.
set -e
if [ ! -c /dev/net/tun ]; then
    mkdir -p /dev/net 2>/dev/null || true
    if ! mknod /dev/net/tun c 10 200 2>/dev/null; then
        echo '{"level":"critical","msg":"gateway.tun_missing","error":"/dev/net/tun is not in the container","hint":"on the host: modprobe tun; then give the container the device (compose: devices: [/dev/net/tun])"}' >&2
        exit 1
    fi
    chmod 0600 /dev/net/tun
fi
exec /usr/local/bin/mstunnel-server "$@"
