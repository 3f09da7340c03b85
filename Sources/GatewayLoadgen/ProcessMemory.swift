import Foundation
import Glibc

/// Proportional set size of a gateway: the given processes and all their descendants
/// (ocserv forks a worker per session, so the main pid alone would say nothing).
public enum ProcessMemory {
    /// The `Pss:` line of `/proc/PID/smaps_rollup`, in kB.
    public static func parsePss(smapsRollup text: String) -> Int? { field("Pss:", in: text) }

    /// `Pss_Anon:` (kernel 5.9+): the heap and stacks, without the shared libraries whose
    /// PSS moves whenever any other process maps or unmaps them.
    public static func parsePssAnon(smapsRollup text: String) -> Int? { field("Pss_Anon:", in: text) }

    static func field(_ name: String, in text: String) -> Int? {
        for line in text.split(whereSeparator: \.isNewline) where line.hasPrefix(name) {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == name, let kb = Int(fields[1]) else { return nil }
            return kb
        }
        return nil
    }

    /// The parent pid from `/proc/PID/stat`. The command name is in parentheses and may
    /// itself contain spaces and parentheses, so fields are counted after the last `)`.
    public static func parseParent(stat text: String) -> Int32? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let rest = text[text.index(after: close)...].split(separator: " ")
        // rest[0] is the state, rest[1] the ppid.
        guard rest.count >= 2, let ppid = Int32(rest[1]) else { return nil }
        return ppid
    }

    /// `roots` and every process below them, from a parent map (pid → ppid).
    public static func descendants(of roots: [Int32], parents: [Int32: Int32]) -> Set<Int32> {
        var children: [Int32: [Int32]] = [:]
        for (pid, ppid) in parents { children[ppid, default: []].append(pid) }
        var out = Set<Int32>()
        var queue = roots.filter { parents[$0] != nil }
        while let p = queue.popLast() {
            guard out.insert(p).inserted else { continue }
            queue.append(contentsOf: children[p] ?? [])
        }
        return out
    }

    /// Every live process's parent, from `/proc`.
    static func parentMap() -> [Int32: Int32] {
        var map: [Int32: Int32] = [:]
        guard let dir = opendir("/proc") else { return map }
        defer { closedir(dir) }
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let pid = Int32(name), let stat = readSmall("/proc/\(pid)/stat"), let ppid = parseParent(stat: stat) else { continue }
            map[pid] = ppid
        }
        return map
    }

    /// Reads a /proc file (their size is not known up front, so no stat-then-read).
    static func readSmall(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Sum of PSS over `roots` and their descendants. A process that exits between the
    /// scan and the read is skipped; none readable at all is an error.
    public static func measure(roots: [Int32]) -> LoadReport.MemorySample {
        let parents = parentMap()
        let pids = descendants(of: roots, parents: parents)
        guard !pids.isEmpty else {
            return .init(pssKB: nil, pssAnonKB: nil, processes: 0, error: "no such process: \(roots.map(String.init).joined(separator: ","))")
        }
        var total = 0
        var anon: Int? = 0
        var counted = 0
        for pid in pids {
            guard let text = readSmall("/proc/\(pid)/smaps_rollup"), let kb = parsePss(smapsRollup: text) else { continue }
            total += kb
            if let a = anon, let more = parsePssAnon(smapsRollup: text) { anon = a + more } else { anon = nil }
            counted += 1
        }
        guard counted > 0 else {
            return .init(pssKB: nil, pssAnonKB: nil, processes: pids.count, error: "cannot read /proc/PID/smaps_rollup (needs root or the same user)")
        }
        return .init(pssKB: total, pssAnonKB: anon, processes: counted, error: nil)
    }
}
