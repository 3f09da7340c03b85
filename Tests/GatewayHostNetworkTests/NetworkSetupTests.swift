import Glibc
import Testing
@testable import GatewayHostNetwork

/// The runner behind `ip` and `nft`, exercised with /bin/sh so each case can choose what
/// the tool reads, writes and returns.
@Suite struct NetworkSetupRunTests {
    func sh(_ script: String, input: String? = nil) throws {
        try NetworkSetup.run("/bin/sh", ["-c", script], input: input, fallback: "/usr/bin/sh")
    }

    func failure(_ body: () throws -> Void) -> String? {
        do {
            try body()
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func successIsSilent() throws {
        try sh("exit 0")
        try sh("cat > /dev/null", input: "table inet x {}\n")
    }

    @Test func failureCarriesTheToolsStderr() {
        let message = failure { try sh("echo 'Error: no such table' >&2; exit 1") }
        #expect(message == "sh -c echo 'Error: no such table' >&2; exit 1 failed: Error: no such table")
    }

    @Test func failureWithoutStderrGivesTheStatus() {
        #expect(failure { try sh("exit 3") }?.hasSuffix("failed with exit status 3") == true)
        // Killed by a signal: 128 + the signal, as a shell reports it.
        #expect(failure { try sh("kill -TERM $$") }?.hasSuffix("failed with exit status 143") == true)
    }

    @Test func inputReachesStdinExactly() {
        // The tool echoes its input back on stderr and fails, so the error shows what it read.
        let script = "table inet mstunnel\ndelete table inet mstunnel\n"
        let message = failure { try sh("cat >&2; exit 1", input: script) }
        #expect(message?.hasSuffix("failed: " + script.trimmingCharacters(in: .whitespacesAndNewlines)) == true)
    }

    @Test func noInputMeansEmptyStdinNotTheCallers() throws {
        // With no input the tool must see end of file at once, not wait on the caller's stdin.
        try sh("test -z \"$(cat)\"")
    }

    @Test func largeInputAndStderrTogetherDoNotDeadlock() {
        // 1 MB in, 1 MB of stderr out at the same time: both pipes overflow unless the
        // runner feeds and drains them together. Only the first 4 KiB of stderr is kept.
        let input = String(repeating: "0123456789abcdef\n", count: 65_536)
        let message = failure { try sh("cat >&2; exit 2", input: input) }
        #expect(message != nil)
        #expect((message?.utf8.count ?? 0) < 4_200)
        #expect(message?.contains("0123456789abcdef") == true)
    }

    @Test func toolThatStopsReadingDoesNotKillTheCaller() throws {
        // The tool exits without reading 1 MB of input, so the write fails with EPIPE and the
        // kernel raises SIGPIPE. The runner must swallow it. Changing the process-wide
        // disposition would race other suites, so SIGPIPE is blocked on this thread
        // instead: a blocked signal stays pending even when ignored, and must not be left.
        var pipeSet = sigset_t()
        var old = sigset_t()
        sigemptyset(&pipeSet)
        sigaddset(&pipeSet, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &pipeSet, &old)
        defer {
            var zero = timespec()
            while sigtimedwait(&pipeSet, nil, &zero) == SIGPIPE {}
            pthread_sigmask(SIG_SETMASK, &old, nil)
        }
        try sh("exit 0", input: String(repeating: "x", count: 1 << 20))
        #expect(failure { try sh("exit 4", input: String(repeating: "x", count: 1 << 20)) }?.hasSuffix("status 4") == true)
        var pending = sigset_t()
        sigpending(&pending)
        #expect(sigismember(&pending, SIGPIPE) == 0)
    }

    @Test func missingProgramIsAClearError() {
        let message = failure {
            try NetworkSetup.run("/nonexistent/ip", ["link"], input: nil, fallback: "/nonexistent/sbin/ip")
        }
        #expect(message == "cannot run /nonexistent/sbin/ip: No such file or directory (ENOENT)")
    }

    @Test func descriptorsDoNotLeakIntoTheTool() throws {
        // A descriptor opened without O_CLOEXEC must still be closed in the child.
        let fd = open("/dev/null", O_RDONLY)
        #expect(fd > 2)
        defer { close(fd) }
        try sh("! test -e /proc/self/fd/\(fd)")
    }
}
