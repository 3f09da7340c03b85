import Foundation

/// Files in the state directory: written whole (temp file + rename) with their mode set
/// before any content lands, so a secret is never readable by others, not even briefly.
enum StateFiles {
    static func write(_ data: Data, to path: String, mode: mode_t) throws {
        let tmp = path + ".tmp.\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
        guard fd >= 0 else { throw PKIError("cannot create \(tmp): \(String(cString: strerror(errno)))") }
        fchmod(fd, mode)
        var ok = true
        data.withUnsafeBytes { buf in
            guard let base = buf.baseAddress else { return }
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
            unlink(tmp)
            throw PKIError("cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates `path` (and parents) as a directory only the owner can enter.
    static func ensureDirectory(_ path: String, mode: mode_t = 0o700) throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
            guard isDir.boolValue else { throw PKIError("\(path) exists and is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: NSNumber(value: mode)])
        } catch {
            throw PKIError("cannot create \(path): \(error.localizedDescription)")
        }
    }
}
