import Dispatch
import Glibc
internal import CFuzzDriver

/// An invariant of the code under test. A violation traps, so libFuzzer keeps the input
/// as a crash artifact and prints the message above the stack.
@inline(never)
public func invariant(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("INVARIANT VIOLATED: \(message())", file: file, line: line) }
}

/// Reads a fuzzer's input front to back: control bytes first, then the payload. Running
/// out is never an error (reads give 0 / empty), so every input is a valid script.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ data: UnsafePointer<UInt8>, _ size: Int) {
        bytes = Array(UnsafeBufferPointer(start: data, count: size))
    }

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public var remaining: Int { bytes.count - offset }
    public var isEmpty: Bool { offset >= bytes.count }

    public mutating func byte() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() -> Int { Int(byte()) << 8 | Int(byte()) }

    public mutating func take(_ n: Int) -> [UInt8] {
        let n = max(0, min(n, remaining))
        defer { offset += n }
        return Array(bytes[offset..<(offset + n)])
    }

    public mutating func rest() -> [UInt8] { take(remaining) }
}

/// Cuts `bytes` into the pieces a socket might deliver, deterministically from `seed`:
/// 0 = all at once, otherwise sizes 1…(seed % 61 + 1) from a small LCG.
public func chunks(_ bytes: [UInt8], seed: UInt8) -> [ArraySlice<UInt8>] {
    guard seed != 0, !bytes.isEmpty else { return [bytes[...]] }
    var out: [ArraySlice<UInt8>] = []
    var state = UInt32(seed) &* 2_654_435_761
    let span = Int(seed % 61) + 1
    var i = 0
    while i < bytes.count {
        state = state &* 1_103_515_245 &+ 12345
        let n = min(bytes.count - i, Int((state >> 16) % UInt32(span)) + 1)
        out.append(bytes[i..<(i + n)])
        i += n
    }
    return out
}

/// Hex for invariant messages (clipped).
public func hex(_ bytes: some Sequence<UInt8>, limit: Int = 64) -> String {
    var s = ""
    for (i, b) in bytes.enumerated() {
        if i == limit { return s + "…" }
        s += String(b, radix: 16).count == 1 ? "0" + String(b, radix: 16) : String(b, radix: 16)
    }
    return s
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}

/// Runs the jobs of the tasks that prefer it on the thread that calls `run(until:)`, one
/// after another. With it an input's async work happens on libFuzzer's own thread, and
/// nothing goes through Dispatch, whose per-thread continuation caches would keep memory
/// allocated in one input and freed in another (libFuzzer then suspects a leak after every
/// input and runs a full LeakSanitizer heap scan, ten times the input's own cost).
private final class InlineExecutor: TaskExecutor, @unchecked Sendable {
    private var jobs: [UnownedJob] = []
    private let lock = DispatchSemaphore(value: 1)
    private let available = DispatchSemaphore(value: 0)

    init() { jobs.reserveCapacity(256) }

    func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        lock.wait()
        jobs.append(unowned)
        lock.signal()
        available.signal()
    }

    /// Runs jobs (waiting for those that come back from elsewhere) until `done()`.
    func run(until done: () -> Bool) {
        while !done() {
            available.wait()
            lock.wait()
            let job = jobs.removeFirst()
            lock.signal()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}

private let inline = InlineExecutor()

/// Runs `body` to completion from a synchronous caller (libFuzzer's thread), on that
/// thread (InlineExecutor): default actors such as TokenValidator run their jobs on the
/// task's preferred executor too.
public func runBlocking<T>(_ body: @escaping @Sendable () async -> T) -> T {
    let box = ResultBox<T>()
    Task(executorPreference: inline) {
        box.value = await body()
    }
    inline.run { box.value != nil }
    return box.value!
}

/// libFuzzer's driver, for the `<module>_main` each target defines (see fuzz_driver.h).
public func runLibFuzzer(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>) -> CInt {
    mstunnel_fuzz_driver(argc, argv)
}

/// Known, reported crashes outside the code under test that a run can step around, so the
/// fuzzer explores past them while they are open: set FUZZ_AVOID_KNOWN=1 (scripts/fuzz.sh
/// passes the environment through). Off by default: then the crash is found, as it must be.
public enum KnownIssue {
    public static let avoid = getenv("FUZZ_AVOID_KNOWN") != nil

    /// swift-corelibs-foundation's XMLParser reads the data of a processing instruction
    /// that has none (`<?pi?>`) through a NULL pointer (SEGV in
    /// _NSXMLParserProcessingInstruction), also when the PI comes from an internal entity.
    /// Any `<?` other than an XML declaration, and any DTD, may lead there (Fuzz/README.md,
    /// Findings).
    public static func xmlProcessingInstruction(_ bytes: [UInt8]) -> Bool {
        guard avoid, bytes.count > 1 else { return false }
        for i in 1..<bytes.count where bytes[i - 1] == UInt8(ascii: "<") {
            let rest = bytes[(i + 1)...]
            if bytes[i] == UInt8(ascii: "?"), !rest.starts(with: "xml version".utf8) { return true }
            if bytes[i] == UInt8(ascii: "!"), rest.starts(with: "DOCTYPE".utf8) || rest.starts(with: "ENTITY".utf8) { return true }
        }
        return false
    }

    /// GraphDate.parse (Foundation's ISO8601DateFormatter) takes year 0000, signed and
    /// 5-digit years and other non-dates, and some print as another instant
    /// ("0000-12-01T00:00:00Z" prints as 0001-12-01; Fuzz/README.md, Findings). Avoided:
    /// anything but `dddd-dd-ddTdd:dd:dd` with a year from 0001. And it dies of SIGFPE (in
    /// ICU's SimpleDateFormat::subParse) on 35 or more fraction digits: avoided, anything
    /// longer than 35 bytes.
    public static func lenientGraphDate(_ text: String) -> Bool {
        guard avoid else { return false }
        let b = Array(text.utf8)
        if b.count > 35 { return true }
        let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]
        guard b.count >= 20, digits.allSatisfy({ b[$0] >= 0x30 && b[$0] <= 0x39 }), b[4] == 0x2D, b[7] == 0x2D, b[10] == 0x54,
              b[13] == 0x3A, b[16] == 0x3A, b[0...3] != [0x30, 0x30, 0x30, 0x30] else { return true }
        return false
    }
}
