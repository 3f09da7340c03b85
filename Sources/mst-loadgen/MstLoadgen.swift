import ArgumentParser
import Foundation
import GatewayLoadgen
import GatewayWire

/// Load generator for OpenConnect-protocol gateways (mstunnel-server, ocserv): opens
/// many real VPN sessions from one event-driven process. Everything lives in GatewayLoadgen.
@main
struct MstLoadgen: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mst-loadgen",
        abstract: "Open N OpenConnect (CSTP over TLS) VPN sessions against a gateway, hold them, and report.",
        discussion: """
            Each session: TCP connect, TLS handshake (no certificate check; --pin compares the key), \
            login (Bearer token, or ocserv-style username/password forms), CONNECT /CSCOSSLC/tunnel, \
            then the tunnel is kept alive (DPD answered, keepalives sent) until the end of --hold. \
            Exit status: 0 when every session was established and none dropped, 1 otherwise, 2 on a setup error, \
            64 on a usage error.
            """,
        version: ProductVersion.string)

    @OptionGroup var arguments: LoadgenArguments

    func run() throws {
        let config: LoadgenConfiguration
        let generator: LoadGenerator
        do {
            config = try arguments.configuration()
            generator = try LoadGenerator(config: config)
        } catch {
            FileHandle.standardError.write(Data("mst-loadgen: \(error)\n".utf8))
            throw ExitCode(2)
        }
        let report = generator.run()
        print(config.json ? report.json() : report.text())
        let clean = report.sessions.established == report.sessions.requested && report.sessions.failed == 0
            && report.sessions.droppedBeforeHold == 0 && report.sessions.droppedDuringHold == 0 && !report.interrupted
        if !clean { throw ExitCode(1) }
    }
}
