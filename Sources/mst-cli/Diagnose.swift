import ArgumentParser
import Foundation
import GatewayIPC
import GatewayWire

/// One screen that says what is wrong and what to do: each check is ok, warning or failed,
/// with the next step for anything not ok. Exit 1 when a check failed.
struct Diagnose: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Check the whole gateway on this host and say what to do about each problem.")
    @Flag(help: "Print JSON instead of text.") var json = false

    struct Check: Encodable {
        var name: String
        var status: String  // ok, warning, failed
        var detail: String
        var action: String?
    }

    func run() throws {
        let install = Install.load()
        var checks: [Check] = []
        func add(_ name: String, _ ok: Bool, _ detail: String, warning: Bool = false, action: String? = nil) {
            checks.append(Check(name: name, status: ok ? "ok" : warning ? "warning" : "failed", detail: detail, action: ok ? nil : action))
        }

        add("install", install.present, install.present ? "\(install.installDirectory)/.env (engine \(install.engine))" : "no \(install.installDirectory)/.env",
            action: "install with deploy/mstunnel-setup (deploy/mst-readiness first says what the host lacks)")
        add("enrollment", FileManager.default.fileExists(atPath: install.stateDirectory + "/agent-info.json"),
            "\(install.stateDirectory)/agent-info.json", action: "run deploy/mstunnel-setup again: it continues where it stopped")

        for name in Install.containers {
            if let c = install.container(name) {
                let running = c.state == "running"
                let healthy = c.health == nil || c.health == "healthy" || c.health == "starting"
                add(name, running && healthy, "\(c.state)\(c.health.map { ", " + $0 } ?? "") (\(c.image))", warning: running,
                    action: running ? "mst-cli \(name.dropFirst("mstunnel-".count)) logs --tail 50 shows why it is unhealthy"
                                    : "mst-cli \(name.dropFirst("mstunnel-".count)) start; if it stops again: mst-cli \(name.dropFirst("mstunnel-".count)) logs --tail 50")
            } else {
                add(name, false, "no container", action: "\(install.compose) up -d in \(install.installDirectory) (or deploy/mstunnel-setup)")
            }
        }

        var status: ServerStatusResponse?
        do {
            let connection = try WireConnection.connect(path: install.runDirectory + "/server.sock")
            connection.setReceiveTimeout(seconds: 5)
            if case .serverStatus(let s) = try connection.call(.serverStatus(ServerStatusRequest())) { status = s }
            add("gateway", status != nil, status.map { "answering: \($0.activeSessions) sessions, port \($0.listenPort)" } ?? "unexpected answer")
        } catch {
            add("gateway", false, "control socket \(install.runDirectory)/server.sock: \(error)",
                action: "mst-cli server logs --tail 50 (is it waiting for admin-settings.json? then the agent has not written it: mst-cli agent logs)")
        }
        if let s = status {
            if let c = s.confinement {
                add("gateway confinement", c.isConfined, c.summary, warning: true,
                    action: "start the gateway with --run-as 994:990 and SETUID/SETGID/SETPCAP in cap_add (compose.yaml from the image)")
            }
            add("auth plugin", s.authAvailable, s.authAvailable ? "connected to the gateway" : "the gateway cannot reach mstunnel-auth",
                action: "mst-cli auth logs --tail 50 (auth.json problems are named there)")
            let used = s.poolSize > 0 ? Double(s.poolInUse) / Double(s.poolSize) : 0
            add("address pool", used < 0.9 && s.poolExhaustedCount == 0, "\(s.poolInUse) of \(s.poolSize) in use, exhausted \(s.poolExhaustedCount) times",
                warning: true, action: "give the Server configuration a larger network (the console, or PATCH microsoftTunnelConfigurations)")
        }

        if install.container(AgentContainer.name)?.state == "running",
           let out = try? Command.run([install.engine, "exec", AgentContainer.name, "mstunnel-agent", "status", "--healthy-within", "300"]) {
            add("control plane check-in", out.status == 0, out.stdout.trimmingCharacters(in: .whitespacesAndNewlines),
                action: "deploy/mst-readiness network (is \(install.controlURL ?? "the control plane") reachable, through the proxy?); mst-cli agent logs --tail 50")
        }

        let forwarding = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_forward", encoding: .utf8))?.hasPrefix("1") ?? false
        add("IPv4 forwarding", forwarding, forwarding ? "on" : "off: clients connect but reach nothing",
            action: "sysctl -w net.ipv4.ip_forward=1, and keep it in /etc/sysctl.d/60-mstunnel.conf")

        let cert = install.stateDirectory + "/certs/site.crt"
        if let out = try? Command.run(["openssl", "x509", "-in", cert, "-noout", "-enddate", "-checkend", String(30 * 86400)]) {
            let end = out.stdout.split(separator: "\n").first.map { String($0).replacingOccurrences(of: "notAfter=", with: "") } ?? "?"
            let expired = (try? Command.run(["openssl", "x509", "-in", cert, "-noout", "-checkend", "0"]))?.status != 0
            add("TLS certificate", out.status == 0, "\(cert) valid until \(end)", warning: !expired,
                action: "get a new certificate and install it with mst-cli import_cert (no session is dropped)")
        }

        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(["checks": checks]), as: UTF8.self))
        } else {
            for c in checks {
                let mark = c.status == "ok" ? "ok     " : c.status == "warning" ? "WARNING" : "FAILED "
                print("\(mark) \(c.name.padding(toLength: 24, withPad: " ", startingAt: 0)) \(c.detail)")
                if let a = c.action { print("        \(String(repeating: " ", count: 24)) → \(a)") }
            }
            let failed = checks.filter { $0.status == "failed" }.count, warned = checks.filter { $0.status == "warning" }.count
            print(failed + warned == 0 ? "\nEverything checked is fine." : "\n\(failed) failed, \(warned) warning(s).")
        }
        if checks.contains(where: { $0.status == "failed" }) { throw ExitCode(1) }
    }
}
