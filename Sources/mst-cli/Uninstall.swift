import ArgumentParser
import Foundation

/// Removes the gateway from this host: the server leaves its Site in the control plane (its
/// record goes, its certificate is refused afterwards), the containers go, then the state,
/// sockets, logs and install directory. Asks first unless `--yes`.
struct Uninstall: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove the gateway: leave the Site, remove the containers, the state directory and the install.")

    @Flag(help: "Do not ask for confirmation.") var yes = false
    @Flag(help: "Remove the local install even if the control plane cannot be told (the server record then stays there).")
    var force = false

    func run() throws {
        let install = Install.load()
        guard install.present || FileManager.default.fileExists(atPath: install.stateDirectory + "/agent-info.json") else {
            throw CLIError("no install found (\(install.installDirectory)/.env and \(install.stateDirectory)/agent-info.json are missing)")
        }
        if !yes {
            print("""
            This removes the mstunnel gateway from this host: the server leaves its Site in the control plane \
            (\(install.controlURL ?? "unknown")), every session ends, and \(install.stateDirectory), \(install.runDirectory), \
            \(install.logDirectory) and \(install.installDirectory) are deleted.
            Type 'uninstall' to go on: 
            """, terminator: "")
            guard readLine()?.trimmingCharacters(in: .whitespaces) == "uninstall" else {
                print("Nothing was changed.")
                throw ExitCode(1)
            }
        }
        // 1. Leave the Site while the agent's identity still exists.
        let leave: Command.Output
        if install.container(AgentContainer.name)?.state == "running" {
            leave = try Command.run([install.engine, "exec", AgentContainer.name, "mstunnel-agent", "leave"])
        } else {
            let image = install.container(AgentContainer.name)?.image ?? "localhost/mstunnel-agent:latest"
            leave = try Command.run([install.engine, "run", "--rm", "--network", "host", "--user", "992:990", "--cap-drop", "ALL",
                                     "-v", install.stateDirectory + ":/etc/mstunnel", image, "leave"])
        }
        if leave.status == 0 {
            print("control plane: \(leave.stdout.trimmingCharacters(in: .whitespacesAndNewlines))")
        } else if force {
            print("control plane: NOT told (\(leave.stderr.trimmingCharacters(in: .whitespacesAndNewlines))); delete the server there by hand")
        } else {
            throw CLIError("""
                the control plane could not be told that this server leaves: \(leave.stderr.trimmingCharacters(in: .whitespacesAndNewlines)). \
                Nothing was removed. Fix the connection (mst-cli diagnose), or run `mst-cli uninstall --force` and delete the server in the console.
                """)
        }
        // 2. The containers.
        if install.present {
            let down = try Command.run(install.composeCommand(["down"]))
            if down.status != 0 { print("compose down: \(down.stderr.trimmingCharacters(in: .whitespacesAndNewlines))") }
        }
        for name in Install.containers { _ = try? Command.run([install.engine, "rm", "-f", name]) }
        print("containers: removed")
        // The host's updater (rolling upgrades), where setup made it a systemd unit.
        if FileManager.default.fileExists(atPath: "/etc/systemd/system/mstunnel-updater.service") {
            _ = try? Command.run(["systemctl", "disable", "--now", "mstunnel-updater.service"])
        }
        // 3. Files.
        for path in [install.stateDirectory, install.runDirectory, install.logDirectory, install.installDirectory, install.updaterDirectory,
                     "/etc/systemd/system/mstunnel-updater.service", "/usr/local/sbin/mstunnel-updater",
                     "/etc/sysctl.d/60-mstunnel.conf", "/etc/tmpfiles.d/mstunnel.conf"] where FileManager.default.fileExists(atPath: path) {
            do {
                try FileManager.default.removeItem(atPath: path)
                print("removed:    \(path)")
            } catch {
                print("NOT removed: \(path): \(error.localizedDescription)")
            }
        }
        print("mstunnel is uninstalled. The images stay (\(install.engine) image ls | grep mstunnel); mst-cli itself is /usr/local/bin/mst-cli.")
    }
}
