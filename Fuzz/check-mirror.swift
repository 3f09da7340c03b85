// Checks that Fuzz/Package.swift declares the root package's libraries it mirrors with the
// same dependencies as the root Package.swift (see the comment at the top of
// Fuzz/Package.swift). Run by scripts/fuzz.sh as
//   swift Fuzz/check-mirror.swift <root dump-package JSON> <fuzz dump-package JSON>
// Prints one line per difference and exits 1 if there is any.
import Foundation

func targets(_ path: String) -> [String: Set<String>] {
    guard let data = FileManager.default.contents(atPath: path),
          let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
          let list = root["targets"] as? [[String: Any]] else {
        print("check-mirror: cannot read \(path)")
        exit(2)
    }
    var out: [String: Set<String>] = [:]
    for t in list {
        guard let name = t["name"] as? String else { continue }
        var deps = Set<String>()
        for d in t["dependencies"] as? [[String: Any]] ?? [] {
            for (_, v) in d {
                if let parts = v as? [Any], let first = parts.first as? String { deps.insert(first) }
            }
        }
        out[name] = deps
    }
    return out
}

let args = CommandLine.arguments
guard args.count == 3 else {
    print("usage: check-mirror.swift ROOT.json FUZZ.json")
    exit(2)
}
let root = targets(args[1])
let fuzz = targets(args[2])
var problems: [String] = []
for (name, deps) in fuzz.sorted(by: { $0.key < $1.key }) {
    guard let rootDeps = root[name] else { continue }  // a target of the fuzz package's own
    let missing = rootDeps.subtracting(deps)
    if !missing.isEmpty {
        problems.append("\(name): the root package gives it \(missing.sorted().joined(separator: ", ")); add to its mirror(...) line in Fuzz/Package.swift")
    }
}
for p in problems { print("check-mirror: \(p)") }
exit(problems.isEmpty ? 0 : 1)
