import ArgumentParser
import Foundation

/// `start|stop|restart|logs` for one container: the same verbs for agent, server and auth,
/// so each is written once and named by two small types.
protocol ContainerName { static var name: String { get } }
enum ServerContainer: ContainerName { static let name = "mstunnel-server" }
enum AuthContainer: ContainerName { static let name = "mstunnel-auth" }
enum AgentContainer: ContainerName { static let name = "mstunnel-agent" }

protocol LifecycleVerb { static var verb: String { get }; static var abstract: String { get } }
enum StartVerb: LifecycleVerb { static let verb = "start"; static let abstract = "Start the container." }
enum StopVerb: LifecycleVerb { static let verb = "stop"; static let abstract = "Stop the container (it stays stopped until start; sessions end)." }
enum RestartVerb: LifecycleVerb { static let verb = "restart"; static let abstract = "Restart the container." }

struct ContainerVerb<C: ContainerName, V: LifecycleVerb>: ParsableCommand {
    static var configuration: CommandConfiguration { CommandConfiguration(commandName: V.verb, abstract: V.abstract) }

    func run() throws {
        let install = Install.load()
        let out = try Command.run([install.engine, V.verb, C.name])
        guard out.status == 0 else {
            throw CLIError("\(install.engine) \(V.verb) \(C.name) failed: \(out.stderr.trimmingCharacters(in: .whitespacesAndNewlines)). `mst-cli diagnose` says what is wrong.")
        }
        print("\(C.name): \(V.verb == "stop" ? "stopped" : V.verb == "start" ? "started" : "restarted")")
    }
}

struct LogsVerb<C: ContainerName>: ParsableCommand {
    static var configuration: CommandConfiguration {
        CommandConfiguration(commandName: "logs", abstract: "The container's log (one JSON line per event).")
    }
    @Flag(name: .shortAndLong, help: "Follow the log.") var follow = false
    @Option(help: "Only lines since this time (e.g. 10m, 2h, or an RFC 3339 time).") var since: String?
    @Option(help: "Only the last N lines.") var tail: Int?

    func run() throws {
        let install = Install.load()
        var argv = [install.engine, "logs"]
        if follow { argv.append("--follow") }
        if let since { argv += ["--since", since] }
        if let tail { argv += ["--tail", String(tail)] }
        Command.exec(argv + [C.name])
    }
}

struct Agent: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The management agent (mstunnel-agent).",
                                                    subcommands: [Status.self, Start.self, Stop.self, Restart.self, Logs.self])
    typealias Start = ContainerVerb<AgentContainer, StartVerb>
    typealias Stop = ContainerVerb<AgentContainer, StopVerb>
    typealias Restart = ContainerVerb<AgentContainer, RestartVerb>
    typealias Logs = LogsVerb<AgentContainer>

    struct Status: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The agent's container, enrollment, last check-in and outbox.")
        @Flag(help: "Print JSON instead of text.") var json = false

        func run() throws {
            let install = Install.load()
            let container = install.container(AgentContainer.name)
            var agent: Any?
            var error: String?
            if container?.state == "running" {
                let out = try Command.run([install.engine, "exec", AgentContainer.name, "mstunnel-agent", "status", "--json"])
                agent = try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8))
                if agent == nil { error = out.stderr.isEmpty ? "no answer from mstunnel-agent status" : out.stderr }
            } else {
                error = "the agent container is not running" + (container.map { " (\($0.state))" } ?? " (no container)")
            }
            if json {
                var object: [String: Any] = ["agent": agent ?? NSNull()]
                if let container, let data = try? JSONEncoder().encode(container) { object["container"] = try? JSONSerialization.jsonObject(with: data) }
                if let error { object["error"] = error }
                let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
                print(String(decoding: data, as: UTF8.self))
            } else {
                print("container:  " + (container.map { "\($0.name) \($0.state)\($0.health.map { ", " + $0 } ?? "")" } ?? "none"))
                if let a = agent as? [String: Any] {
                    for key in ["serverId", "siteId", "controlPlaneUrl", "lastSuccessfulCheckinDateTime", "lastCheckinResult",
                                "appliedConfigurationVersion", "agentCertificateNotAfter", "outboxDepth"] {
                        if let v = a[key] { print("\((key + ":").padding(toLength: 32, withPad: " ", startingAt: 0))\(v)") }
                    }
                }
                if let error { print("problem:    \(error)") }
            }
            if error != nil { throw ExitCode(1) }
        }
    }
}
