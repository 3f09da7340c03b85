import Foundation
import Glibc

/// Gathers the stack's log lines for a time window, for a `collectLogs` action.
///
/// Input: `<log-dir>/*.log` and `<log-dir>/*.log.1` (the previous rotation), one JSON
/// object per line with `ts` first (RFC 3339 UTC, milliseconds), as GatewayLogging writes.
/// Output: the lines whose `ts` is inside [start, end], merged across files in time order,
/// each prefixed with the process name (the file name without `.log`) and a space, e.g.
/// `mstunnel-server {"ts":"…","level":"info",…}`. A line without a `ts` (a continuation
/// such as a multi-line message) follows the line before it.
public struct LogCollector: Sendable {
    public var logDirectory: String
    /// Upper bound of the upload, the trailer included; beyond it lines are counted and a
    /// last line says so (room for that line is kept, so the body never exceeds this).
    public var maxBytes: Int

    public init(logDirectory: String, maxBytes: Int = 64 << 20) {
        self.logDirectory = logDirectory
        self.maxBytes = maxBytes
    }

    public struct Collected: Sendable {
        public var text: Data
        public var lines: Int
        public var files: [String]
        public var truncatedLines: Int
    }

    public func collect(start: Date, end: Date) throws(AgentError) -> Collected {
        guard end >= start else { throw AgentError("invalid window: endDateTime is before startDateTime") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: logDirectory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw AgentError("log directory \(logDirectory) does not exist (the stack writes its logs there when MSTUNNEL_LOG_DIR is set)")
        }
        let names: [String]
        do {
            names = try FileManager.default.contentsOfDirectory(atPath: logDirectory)
        } catch {
            throw AgentError("cannot list \(logDirectory): \(error.localizedDescription)")
        }
        // Older rotation first, so equal timestamps keep the order they were written in.
        let files = names.filter { $0.hasSuffix(".log") || $0.hasSuffix(".log.1") }
            .sorted { (rank($0), $0) < (rank($1), $1) }
        let startMs = Int64((start.timeIntervalSince1970 * 1000).rounded(.down))
        let endMs = Int64((end.timeIntervalSince1970 * 1000).rounded(.down))

        // The trailer counts against maxBytes too (the control plane refuses a body over its
        // limit, 64 MiB, with 413): room for the longest trailer is kept free for lines.
        let lineBudget = max(0, maxBytes - Self.trailer(truncated: Int.max, maxBytes: maxBytes).utf8.count)
        var entries: [(ms: Int64, order: Int, text: String)] = []
        var bytes = 0
        var truncated = 0
        var order = 0
        var used: [String] = []
        for name in files {
            let process = Self.processName(name)
            var previousIncluded = false
            var previousMs: Int64 = 0
            var any = false
            let ok = LineReader.forEachLine(path: logDirectory + "/" + name) { line in
                let ms: Int64
                if let t = Self.timestampMilliseconds(line) {
                    guard t >= startMs, t <= endMs else { previousIncluded = false; return }
                    ms = t
                } else {
                    guard previousIncluded, !line.isEmpty else { return }
                    ms = previousMs
                }
                previousIncluded = true
                previousMs = ms
                let text = process + " " + line
                if bytes + text.utf8.count + 1 > lineBudget {
                    truncated += 1
                    return
                }
                bytes += text.utf8.count + 1
                entries.append((ms, order, text))
                order += 1
                any = true
            }
            if ok && any { used.append(name) }
        }
        entries.sort { ($0.ms, $0.order) < ($1.ms, $1.order) }
        var out = Data(capacity: bytes + 128)
        for e in entries {
            out.append(contentsOf: e.text.utf8)
            out.append(0x0A)
        }
        if truncated > 0 {
            // Only shorter than the room kept when maxBytes is smaller than a trailer.
            out.append(contentsOf: Self.trailer(truncated: truncated, maxBytes: maxBytes).utf8.prefix(max(0, maxBytes - out.count)))
        }
        return Collected(text: out, lines: entries.count, files: used, truncatedLines: truncated)
    }

    /// The last line when lines were left out.
    static func trailer(truncated: Int, maxBytes: Int) -> String {
        "mstunnel-agent log collection truncated: \(truncated) more matching lines not included (limit \(maxBytes) bytes)\n"
    }

    private func rank(_ name: String) -> Int { name.hasSuffix(".1") ? 0 : 1 }

    static func processName(_ file: String) -> String {
        var n = file
        if n.hasSuffix(".1") { n.removeLast(2) }
        if n.hasSuffix(".log") { n.removeLast(4) }
        return n
    }

    /// The `ts` of a JSON log line in milliseconds since 1970, without a full JSON parse
    /// (log files are large): finds `"ts":"…"` and parses the RFC 3339 value.
    public static func timestampMilliseconds<S: StringProtocol>(_ line: S) -> Int64? {
        guard let key = line.range(of: "\"ts\":\"") ?? line.range(of: "\"ts\": \"") else { return nil }
        let rest = line[key.upperBound...]
        guard let close = rest.firstIndex(of: "\"") else { return nil }
        return RFC3339.milliseconds(String(rest[..<close]))
    }
}

/// RFC 3339 timestamps such as `2026-11-21T21:41:37.123Z` or `…+01:00`, to milliseconds.
enum RFC3339 {
    static func milliseconds(_ s: String) -> Int64? {
        let b = Array(s.utf8)
        func num(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= b.count else { return nil }
            var v = 0
            for i in from ..< from + count {
                guard b[i] >= 48, b[i] <= 57 else { return nil }
                v = v * 10 + Int(b[i] - 48)
            }
            return v
        }
        guard b.count >= 20, let year = num(0, 4), b[4] == 45, let month = num(5, 2), b[7] == 45, let day = num(8, 2),
              b[10] == 84 || b[10] == 116 || b[10] == 32, let hour = num(11, 2), b[13] == 58, let minute = num(14, 2), b[16] == 58,
              let second = num(17, 2), (1 ... 12).contains(month), (1 ... 31).contains(day), hour < 24, minute < 60, second <= 60
        else { return nil }
        var i = 19
        var millis = 0
        if i < b.count, b[i] == 46 {
            i += 1
            var digits = 0
            while i < b.count, b[i] >= 48, b[i] <= 57 {
                if digits < 3 { millis = millis * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits ..< max(digits, 3) { millis *= 10 }
        }
        var offsetSeconds = 0
        guard i < b.count else { return nil }
        if b[i] == 90 || b[i] == 122 {
            guard i + 1 == b.count else { return nil }
        } else if b[i] == 43 || b[i] == 45, let oh = num(i + 1, 2), i + 3 < b.count, b[i + 3] == 58, let om = num(i + 4, 2), i + 6 == b.count {
            offsetSeconds = (oh * 3600 + om * 60) * (b[i] == 43 ? 1 : -1)
        } else {
            return nil
        }
        var t = tm()
        t.tm_year = Int32(year - 1900)
        t.tm_mon = Int32(month - 1)
        t.tm_mday = Int32(day)
        t.tm_hour = Int32(hour)
        t.tm_min = Int32(minute)
        t.tm_sec = Int32(second)
        let epoch = Int64(timegm(&t))
        return (epoch - Int64(offsetSeconds)) * 1000 + Int64(millis)
    }
}

/// Streams a file line by line with getline(3), so a large log never sits in memory whole.
enum LineReader {
    /// false when the file could not be opened.
    static func forEachLine(path: String, _ body: (String) -> Void) -> Bool {
        guard let file = fopen(path, "re") else { return false }
        defer { fclose(file) }
        var buffer: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(buffer) }
        while true {
            let n = getline(&buffer, &capacity, file)
            if n < 0 { break }
            guard let buffer else { break }
            var length = n
            if length > 0, buffer[length - 1] == 0x0A { length -= 1 }
            if length > 0, buffer[length - 1] == 0x0D { length -= 1 }
            let line = buffer.withMemoryRebound(to: UInt8.self, capacity: length) {
                String(decoding: UnsafeBufferPointer(start: $0, count: length), as: UTF8.self)
            }
            body(line)
        }
        return true
    }
}
