import Foundation
import GatewaySystem

/// The install mst-cli acts on: what `deploy/mstunnel-setup` wrote to
/// `<install-dir>/.env` (default `/opt/mstunnel`, or `MSTUNNEL_INSTALL_DIR`), with the
/// environment taking precedence, and the product defaults where neither says.
struct Install {
    var installDirectory: String
    var engine: String
    var compose: String
    var stateDirectory: String
    var runDirectory: String
    var logDirectory: String
    /// The host updater's directory (rolling upgrades).
    var updaterDirectory: String = "/var/lib/mstunnel-updater"
    var controlURL: String?
    var present: Bool

    static let containers = ["mstunnel-server", "mstunnel-auth", "mstunnel-agent"]

    static func load(environment: [String: String] = ProcessInfo.processInfo.environment) -> Install {
        let dir = environment["MSTUNNEL_INSTALL_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/opt/mstunnel"
        var values: [String: String] = [:]
        let text = (try? String(contentsOfFile: dir + "/.env", encoding: .utf8))
        for line in (text ?? "").split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        func value(_ key: String, _ fallback: String) -> String {
            if let v = environment[key], !v.isEmpty { return v }
            if let v = values[key], !v.isEmpty { return v }
            return fallback
        }
        let engine = value("MSTUNNEL_ENGINE", "podman")
        return Install(installDirectory: dir, engine: engine,
                       compose: value("MSTUNNEL_COMPOSE", engine == "docker" ? "docker compose" : "podman-compose"),
                       stateDirectory: value("MSTUNNEL_DIR", "/etc/mstunnel"), runDirectory: value("MSTUNNEL_RUN_DIR", "/run/mstunnel"),
                       logDirectory: value("MSTUNNEL_LOG_DIR", "/var/log/mstunnel"),
                       updaterDirectory: value("MSTUNNEL_UPDATER_DIR", "/var/lib/mstunnel-updater"),
                       controlURL: values["MSTUNNEL_CONTROL_URL"], present: text != nil)
    }

    /// What `inspect` says of one container; nil when there is no such container.
    struct ContainerState: Codable {
        var name: String
        var state: String
        var health: String?
        var image: String
        var startedAt: String?
    }

    func container(_ name: String) -> ContainerState? {
        guard let out = try? Command.run([engine, "inspect", "--type", "container", name]), out.status == 0,
              let array = try? JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [[String: Any]],
              let first = array.first else { return nil }
        let state = first["State"] as? [String: Any] ?? [:]
        let health = (state["Health"] as? [String: Any])?["Status"] as? String
            ?? (state["Healthcheck"] as? [String: Any])?["Status"] as? String
        let config = first["Config"] as? [String: Any] ?? [:]
        return ContainerState(name: name, state: state["Status"] as? String ?? "unknown", health: health.flatMap { $0.isEmpty ? nil : $0 },
                              image: config["Image"] as? String ?? first["ImageName"] as? String ?? "", startedAt: state["StartedAt"] as? String)
    }

    /// `compose … ARGS` in the install directory, with its `.env`.
    func composeCommand(_ args: [String]) -> [String] {
        // Absolute paths: no working directory needed.
        compose.split(separator: " ").map(String.init) + ["--env-file", installDirectory + "/.env", "-f", installDirectory + "/compose.yaml"] + args
    }
}

/// Runs programs for mst-cli: posix_spawn and waitpid, output into files. Not Foundation's
/// Process: `podman start` leaves conmon running with descriptors it inherited, and Process
/// then never reported the exit (the test of `mst-cli server start` hung on it).
enum Command {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ argv: [String]) throws -> Output {
        let base = NSTemporaryDirectory() + "mst-cli-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { unlink(base + ".out"); unlink(base + ".err") }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, base + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, base + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        defer { cArgs.forEach { free($0) } }
        var pid = pid_t()
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cArgs, environ)
        guard rc == 0 else { throw CLIError("cannot run \(argv[0]): \(SystemError.reason(rc))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 {
            guard errno == EINTR else { throw CLIError("waiting for \(argv[0]): \(SystemError.reason(errno))") }
        }
        // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are C macros).
        let exit: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        let out = FileManager.default.contents(atPath: base + ".out") ?? Data()
        let err = FileManager.default.contents(atPath: base + ".err") ?? Data()
        return Output(status: exit, stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
    }

    /// Replaces mst-cli with the program (its output goes straight to the terminal: `logs -f`).
    static func exec(_ argv: [String]) -> Never {
        var cArgs = argv.map { strdup($0) }
        cArgs.append(nil)
        execvp(argv[0], &cArgs)
        FileHandle.standardError.write(Data("Error: cannot run \(argv[0]): \(SystemError.reason(errno))\n".utf8))
        exit(1)
    }
}
