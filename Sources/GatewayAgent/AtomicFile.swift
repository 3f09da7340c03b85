import Foundation
import Glibc
import GatewaySystem

/// Crash-safe file replacement: readers (the gateway, a later agent run) see either the
/// old file or the new one, never a torn write, even across a power cut.
public enum AtomicFile {
    /// Writes `data` to a temp file in the same directory (so `rename` stays on one file
    /// system), sets `mode` before any byte is written (a key is never world-readable, not
    /// even for a moment), fsyncs it, renames it over `path`, then fsyncs the directory so
    /// the rename itself is durable.
    ///
    /// `group`: also give the file this group (best effort: refused when the agent is
    /// neither root nor a member, and the file then keeps the agent's own group).
    public static func write(_ data: Data, to path: String, mode: mode_t, group: gid_t? = nil) throws(AgentError) {
        let directory = (path as NSString).deletingLastPathComponent
        let temp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw AgentError("cannot create \(temp): \(errnoText())") }
        var ok = false
        defer {
            if !ok { unlink(temp) }
        }
        // open() applies the umask; fchmod makes the mode exactly what was asked.
        guard fchmod(fd, mode) == 0 else {
            let e = errnoText(); close(fd)
            throw AgentError("cannot chmod \(temp): \(e)")
        }
        if let group { _ = fchown(fd, uid_t.max, group) }
        let written: Bool = data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    return false
                }
                offset += n
            }
            return true
        }
        guard written else {
            let e = errnoText(); close(fd)
            throw AgentError("cannot write \(temp): \(e)")
        }
        guard fsync(fd) == 0 else {
            let e = errnoText(); close(fd)
            throw AgentError("cannot fsync \(temp): \(e)")
        }
        close(fd)
        guard rename(temp, path) == 0 else { throw AgentError("cannot rename \(temp) to \(path): \(errnoText())") }
        ok = true
        syncDirectory(directory)
    }

    /// Renames and makes the rename durable.
    public static func move(_ from: String, to: String) throws(AgentError) {
        guard rename(from, to) == 0 else { throw AgentError("cannot rename \(from) to \(to): \(errnoText())") }
        syncDirectory((to as NSString).deletingLastPathComponent)
    }

    static func syncDirectory(_ directory: String) {
        let dfd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// Creates the directory (and parents) if needed and sets its mode; an existing
    /// directory's mode is corrected too, so `private/` is 0700 even if someone made it first.
    public static func ensureDirectory(_ path: String, mode: mode_t) throws(AgentError) {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw AgentError("\(path) exists and is not a directory") }
        } else {
            do {
                try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            } catch {
                throw AgentError("cannot create directory \(path): \(error.localizedDescription)")
            }
        }
        guard chmod(path, mode) == 0 else { throw AgentError("cannot chmod \(path): \(errnoText())") }
    }

    /// `private/`: created 0700; an existing one may stay group-readable (0750: in the
    /// containers the gateway reads `private/site.key` through the stack's group, while the
    /// agent's own key inside is 0600), but anything wider (group-writable, any access for
    /// others) is tightened to 0700.
    public static func ensurePrivateDirectory(_ path: String) throws(AgentError) {
        var st = stat()
        if stat(path, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR, st.st_mode & 0o027 == 0 { return }
        try ensureDirectory(path, mode: 0o700)
    }

    /// The group of `path` (the state directory: 990, the stack's group, in the images),
    /// nil when it cannot be read.
    public static func group(of path: String) -> gid_t? {
        var st = stat()
        return stat(path, &st) == 0 ? st.st_gid : nil
    }

    /// Takes away the permission bits of an existing file that `mode` does not allow
    /// (never adds any; a missing file is left alone). Returns false when it could not.
    @discardableResult
    public static func restrict(_ path: String, to mode: mode_t) -> Bool {
        var st = stat()
        guard lstat(path, &st) == 0 else { return errno == ENOENT }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return false }
        let current = st.st_mode & 0o7777
        if current & ~mode == 0 { return true }
        return chmod(path, current & mode) == 0
    }

    /// Reads a whole small file; nil when it does not exist or cannot be read.
    public static func read(_ path: String) -> Data? {
        FileManager.default.contents(atPath: path)
    }
}

func errnoText(_ code: Int32 = errno) -> String {
    SystemError.reason(code)
}
