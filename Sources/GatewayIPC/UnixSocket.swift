internal import CGatewayShims
import Glibc
import GatewayWire
import GatewaySystem

/// Errors from the Unix-socket transport, with the errno where there is one.
public struct IPCError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public let errno: Int32?

    public init(_ message: String, errno: Int32? = nil) {
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let e = errno { return "\(message): \(SystemError.reason(e))" }
        return message
    }
}

/// Who is on the other end of an AF_UNIX socket, from SO_PEERCRED (the kernel's word,
/// not the peer's).
public struct PeerCredentials: Sendable, Equatable, CustomStringConvertible {
    public var pid: Int32
    public var uid: UInt32
    public var gid: UInt32

    public init(pid: Int32, uid: UInt32, gid: UInt32) {
        self.pid = pid
        self.uid = uid
        self.gid = gid
    }

    public var description: String { "pid=\(pid) uid=\(uid) gid=\(gid)" }

    public static func of(fd: Int32) throws -> PeerCredentials {
        var pid: pid_t = 0, uid: uid_t = 0, gid: gid_t = 0
        let rc = CGatewayShims_peerCredentials(fd, &pid, &uid, &gid)
        if rc < 0 { throw IPCError("SO_PEERCRED", errno: -rc) }
        return PeerCredentials(pid: pid, uid: uid, gid: gid)
    }
}

/// Which peers may talk to a socket. Root and our own uid are always allowed; beyond
/// them, explicit uids and gids (the stack's shared group in containers).
public struct PeerPolicy: Sendable {
    public var allowedUIDs: Set<UInt32>
    public var allowedGIDs: Set<UInt32>

    public init(allowedUIDs: Set<UInt32> = [], allowedGIDs: Set<UInt32> = []) {
        self.allowedUIDs = allowedUIDs
        self.allowedGIDs = allowedGIDs
    }

    public func allows(_ peer: PeerCredentials) -> Bool {
        peer.uid == 0 || peer.uid == getuid() || allowedUIDs.contains(peer.uid) || allowedGIDs.contains(peer.gid)
    }
}

public enum UnixSocket {
    /// Binds and listens on `path`, replacing a stale socket file, with the file mode
    /// set before anyone can connect (umask 077 during bind, then chmod to `mode`).
    public static func listen(path: String, mode: UInt32 = 0o660, backlog: Int32 = 128, nonBlocking: Bool = false) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | (nonBlocking ? Int32(SOCK_NONBLOCK.rawValue) : 0), 0)
        if fd < 0 { throw IPCError("socket(AF_UNIX)", errno: errno) }
        let addr: SocketAddress
        do { addr = try SocketAddress(unixPath: path) } catch {
            close(fd)
            throw IPCError(error.description)
        }
        unlink(path)
        let old = umask(0o077)
        let rc = addr.withSockaddr { bind(fd, $0, $1) }
        let bindErrno = errno
        umask(old)
        if rc < 0 {
            close(fd)
            throw IPCError("bind \(path)", errno: bindErrno)
        }
        if chmod(path, mode_t(mode)) < 0 {
            let e = errno
            close(fd)
            throw IPCError("chmod \(path)", errno: e)
        }
        if Glibc.listen(fd, backlog) < 0 {
            let e = errno
            close(fd)
            throw IPCError("listen \(path)", errno: e)
        }
        return fd
    }

    /// Connects to `path`. Blocking unless `nonBlocking`.
    public static func connect(path: String, nonBlocking: Bool = false) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        if fd < 0 { throw IPCError("socket(AF_UNIX)", errno: errno) }
        let addr: SocketAddress
        do { addr = try SocketAddress(unixPath: path) } catch {
            close(fd)
            throw IPCError(error.description)
        }
        let rc = addr.withSockaddr { Glibc.connect(fd, $0, $1) }
        if rc < 0 {
            let e = errno
            close(fd)
            throw IPCError("connect \(path)", errno: e)
        }
        if nonBlocking {
            let flags = fcntl(fd, F_GETFL)
            _ = fcntl(fd, F_SETFL, flags | O_NONBLOCK)
        }
        return fd
    }

    /// Writes all of `bytes` to a blocking fd.
    public static func writeAll(fd: Int32, _ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(fd, raw.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
            }
            if n < 0 {
                if errno == EINTR { continue }
                throw IPCError("send", errno: errno)
            }
            offset += n
        }
    }
}
