import Glibc
import GatewaySystem
import Testing

@Suite struct SystemErrorTests {
    @Test func saysWhatFailedWhyAndTheCode() {
        let e = SystemError("bind [198.18.0.1]:443", errno: EADDRINUSE)
        #expect(e.code == "EADDRINUSE")
        #expect(e.description == "bind [198.18.0.1]:443: Address already in use (EADDRINUSE)")
    }

    @Test func anErrnoOutsideTheTableStillHasACode() {
        #expect(SystemError.name(of: 4095) == "E4095")
    }

    @Test(arguments: [EPERM, ENOENT, EACCES, EAGAIN, EMFILE, ECONNREFUSED, ENOBUFS, EMSGSIZE])
    func everyCommonErrnoHasItsName(_ errno: Int32) {
        #expect(!SystemError.name(of: errno).hasPrefix("E\(errno)"))
        #expect(SystemError.reason(errno).hasSuffix("(\(SystemError.name(of: errno)))"))
    }
}
