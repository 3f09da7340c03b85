import Foundation
import Synchronization
import Logging

/// Structured log lines on stdout, one JSON object per line, for `podman logs -f`.
///
/// Keys: `ts` (RFC 3339, UTC, milliseconds), `level`, `label`, `msg`, then metadata.
/// Libraries never bootstrap logging; each executable calls `GatewayLog.bootstrap` once.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "{\"ts\":\"\(Self.timestamp())\",\"level\":\"\(event.level.rawValue)\",\"label\":"
        Self.appendJSONString(label, to: &line)
        line += ",\"msg\":"
        Self.appendJSONString(event.message.description, to: &line)
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        for key in merged.keys.sorted() {
            line += ","
            Self.appendJSONString(key, to: &line)
            line += ":"
            Self.appendJSONString(merged[key]!.description, to: &line)
        }
        line += "}\n"
        GatewayLog.write(line)
    }

    static func timestamp() -> String {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        var t = time_t(ts.tv_sec)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return String(format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tmv.tm_year + 1900, tmv.tm_mon + 1, tmv.tm_mday,
                      tmv.tm_hour, tmv.tm_min, tmv.tm_sec, ts.tv_nsec / 1_000_000)
    }

    static func appendJSONString(_ s: String, to out: inout String) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

public enum GatewayLog {
    /// Installs the JSON handler for the whole process. The level comes from `LOG_LEVEL`
    /// (trace, debug, info, notice, warning, error, critical), default info.
    ///
    /// With `MSTUNNEL_LOG_DIR` set, every line also goes to `<dir>/<process>.log`
    /// (rotated to `.log.1` at 16 MiB): that is what the agent reads for a log
    /// collection, since it cannot read other containers' stdout.
    public static func bootstrap(defaultLevel: Logger.Level = .info, process: String = ProcessInfo.processInfo.processName) {
        let env = ProcessInfo.processInfo.environment["LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) }
        let level = env ?? defaultLevel
        if let dir = ProcessInfo.processInfo.environment["MSTUNNEL_LOG_DIR"], !dir.isEmpty {
            fileSink.withLock { $0 = LogFile(directory: dir, process: process) }
        }
        LoggingSystem.bootstrap { label in JSONLogHandler(label: label, level: level) }
    }

    private static let fileSink = Mutex<LogFile?>(nil)

    /// One write(2) per line so lines from several threads never interleave.
    static func write(_ line: String) {
        var copy = line
        copy.withUTF8 { buf in
            writeAll(1, buf)
            fileSink.withLock { $0?.append(buf) }
        }
    }

    static func writeAll(_ fd: Int32, _ buf: UnsafeBufferPointer<UInt8>) {
        var off = 0
        while off < buf.count {
            let n = Foundation.write(fd, buf.baseAddress! + off, buf.count - off)
            if n <= 0 { break }
            off += n
        }
    }
}

/// The optional log file: append-only, size-bounded by one rotation.
struct LogFile: ~Copyable {
    static let maxBytes = 16 << 20
    let path: String
    var fd: Int32
    var size: Int

    init?(directory: String, process: String) {
        _ = mkdir(directory, 0o750)
        path = directory + "/" + process + ".log"
        fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else {
            let msg = "{\"level\":\"warning\",\"msg\":\"log.file_unavailable\",\"path\":\"\(path)\",\"errno\":\"\(errno)\"}\n"
            FileHandle.standardError.write(Data(msg.utf8))
            return nil
        }
        var st = stat()
        size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
    }

    deinit { if fd >= 0 { close(fd) } }

    mutating func append(_ buf: UnsafeBufferPointer<UInt8>) {
        if size + buf.count > Self.maxBytes {
            close(fd)
            _ = rename(path, path + ".1")
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
            size = 0
            if fd < 0 { return }
        }
        GatewayLog.writeAll(fd, buf)
        size += buf.count
    }
}
