import Foundation
import Glibc

/// Aggregate CPU time counters from the first line of `/proc/stat`, in USER_HZ ticks.
public struct CPUTimes: Sendable, Equatable {
    public var busy: UInt64
    public var total: UInt64

    /// Parses `cpu  user nice system idle iowait irq softirq steal guest guest_nice`.
    /// Idle and iowait count as not busy; guest time is already inside user, so only the
    /// first eight columns are summed. nil for anything else.
    public static func parse(procStat text: String) -> CPUTimes? {
        for line in text.split(separator: "\n", maxSplits: 16) {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.first == "cpu" else { continue }
            let numbers = fields.dropFirst().prefix(8).compactMap { UInt64($0) }
            guard numbers.count >= 4 else { return nil }
            let total = numbers.reduce(0, &+)
            let idle = numbers[3] &+ (numbers.count > 4 ? numbers[4] : 0)
            return CPUTimes(busy: total &- min(idle, total), total: total)
        }
        return nil
    }

    /// Busy percent of all cores between two samples; nil when the counters did not move
    /// forward (same sample, or a counter reset).
    public static func usagePercent(from old: CPUTimes, to new: CPUTimes) -> Double? {
        guard new.total > old.total, new.busy >= old.busy else { return nil }
        let percent = Double(new.busy - old.busy) / Double(new.total - old.total) * 100
        return min(100, max(0, percent))
    }
}

public enum MemoryInfo {
    /// Memory in use, percent: (MemTotal − MemAvailable) / MemTotal, from `/proc/meminfo`.
    /// nil when either line is missing (MemAvailable exists since Linux 3.14).
    public static func usagePercent(procMeminfo text: String) -> Double? {
        var total: UInt64?
        var available: UInt64?
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2 else { continue }
            switch fields[0] {
            case "MemTotal:": total = UInt64(fields[1])
            case "MemAvailable:": available = UInt64(fields[1])
            default: break
            }
            if total != nil && available != nil { break }
        }
        guard let total, let available, total > 0, available <= total else { return nil }
        return Double(total - available) / Double(total) * 100
    }
}

public enum DiskSpace {
    /// Bytes available to unprivileged users on the file system holding `path`
    /// (`f_bavail × f_frsize`: what the stack's non-root processes can still write).
    public static func freeBytes(path: String) -> Int64? {
        var s = statvfs()
        guard statvfs(path, &s) == 0 else { return nil }
        let bytes = UInt64(s.f_bavail) &* UInt64(s.f_frsize)
        return bytes > UInt64(Int64.max) ? Int64.max : Int64(bytes)
    }
}

/// Reads a small `/proc` file (they report size 0, so read until EOF).
enum ProcFile {
    static func read(_ path: String) -> String? {
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        guard let data = try? handle.readToEnd() else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}
