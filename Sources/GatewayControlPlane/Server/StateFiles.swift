import Foundation
import GatewaySystem

/// Files in the state directory: written whole (temp file + rename) with their mode set
/// before any content lands, so a secret is never readable by others, not even briefly.
enum StateFiles {
    /// The temp file has a random name and is created exclusively (`O_EXCL`, never through
    /// a symlink: `O_NOFOLLOW`) with mode 0600, so concurrent writers of the same path
    /// never share one and nothing planted beforehand is written through; `mode` is set
    /// before the rename.
    static func write(_ data: Data, to path: String, mode: mode_t) throws {
        let tmp = path + ".tmp." + Secrets.hex((0..<8).map { _ in UInt8.random(in: 0...255) })
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw PKIError("cannot create \(tmp): \(SystemError.reason(errno))") }
        var ok = fchmod(fd, mode) == 0
        data.withUnsafeBytes { buf in
            guard ok, let base = buf.baseAddress else { return }
            var off = 0
            while off < buf.count {
                let n = Foundation.write(fd, base.advanced(by: off), buf.count - off)
                if n <= 0 { ok = false; break }
                off += n
            }
        }
        if fsync(fd) != 0 { ok = false }
        close(fd)
        guard ok, rename(tmp, path) == 0 else {
            let reason = SystemError.reason(errno)
            unlink(tmp)
            throw PKIError("cannot write \(path): \(reason)")
        }
    }

    /// Makes `path` (and parents) a directory only the owner can enter: created with `mode`,
    /// and an existing one is set to `mode` too (a state directory made by hand, or by an
    /// older version, is tightened at start).
    static func ensureDirectory(_ path: String, mode: mode_t = 0o700) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PKIError("\(path) exists and is not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                        attributes: [.posixPermissions: NSNumber(value: mode)])
            } catch {
                throw PKIError("cannot create \(path): \(error.localizedDescription)")
            }
        }
        guard chmod(path, mode) == 0 else {
            throw PKIError("cannot set mode \(String(mode, radix: 8)) on \(path): \(SystemError.reason(errno))")
        }
    }
}
