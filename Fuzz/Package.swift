// swift-tools-version:6.2
import PackageDescription

// libFuzzer targets for mstunnel's parsers. A package of its own, so the root package's
// `swift build` / `swift test` never compile them; build and run with scripts/fuzz.sh.
//
// The root package has executable products only, so a `.package(path: "..")` dependency
// could not reach its library targets. Instead `Mirror` is a symbolic link to ../Sources
// and the libraries the fuzzers need are declared here again with the same sources and
// dependencies (compiled, like every target here, with the fuzzer's coverage and ASan
// flags that scripts/fuzz.sh passes). If a root target gains a dependency, add it below.

let lib: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
]
// The fuzz targets themselves: Swift 6, warnings are errors, no `main` (libFuzzer has it).
let fuzzer: [SwiftSetting] = lib + [
    .treatAllWarnings(as: .error),
    .unsafeFlags(["-parse-as-library"]),
]

func mirror(_ name: String, _ deps: [Target.Dependency] = []) -> Target {
    .target(name: name, dependencies: deps, path: "Mirror/\(name)", swiftSettings: lib)
}

func fuzzTarget(_ name: String, _ deps: [Target.Dependency]) -> Target {
    .executableTarget(name: name, dependencies: ["FuzzSupport"] + deps, path: "Targets/\(name)", swiftSettings: fuzzer)
}

let package = Package(
    name: "mstunnel-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [
        // The same requirements as the root package, so the same versions resolve.
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.1.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
    ],
    targets: [
        // --- The root package's libraries (sources through Mirror -> ../Sources).
        .systemLibrary(name: "COpenSSL", path: "Mirror/COpenSSL", pkgConfig: "openssl"),
        .systemLibrary(name: "CCurl", path: "Mirror/CCurl", pkgConfig: "libcurl"),
        .target(name: "CGatewayShims", path: "Mirror/CGatewayShims"),
        mirror("GatewayCurl", ["CCurl"]),
        mirror("GatewaySystem"),
        mirror("GatewayCore"),
        mirror("GatewayWire"),
        mirror("GatewayAgentAPI", ["GatewayCore"]),
        mirror("GatewayIPC", ["GatewaySystem", "GatewayWire", "CGatewayShims"]),
        mirror("GatewayTUN", ["GatewaySystem", "GatewayCore", "CGatewayShims"]),
        mirror("GatewaySessionCore", ["GatewayCore", "GatewayWire", "GatewaySystem"]),
        mirror("GatewayHostNetwork", ["GatewaySystem", "GatewayCore", "GatewayWire", "GatewayIPC", "CGatewayShims",
                                      .product(name: "Logging", package: "swift-log")]),
        mirror("GatewayAuth", ["GatewaySystem", "GatewayWire", "GatewayIPC", "CCurl", "GatewayCurl", "COpenSSL",
                               .product(name: "JWTKit", package: "jwt-kit"),
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Logging", package: "swift-log")]),

        // --- Shared by the fuzzers: input splitting, invariant checks, run-blocking.
        .target(name: "CFuzzDriver", path: "Targets/CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"], path: "Targets/FuzzSupport",
                swiftSettings: lib + [.treatAllWarnings(as: .error)]),

        // --- One executable per fuzzer; each exports LLVMFuzzerTestOneInput.
        fuzzTarget("fuzz-http-request", ["GatewayCore"]),
        fuzzTarget("fuzz-config-auth", ["GatewayCore"]),
        fuzzTarget("fuzz-login-connect", ["GatewayCore", "GatewaySessionCore", "GatewayWire"]),
        fuzzTarget("fuzz-cstp", ["GatewayCore", "GatewaySessionCore", "GatewayTUN"]),
        fuzzTarget("fuzz-dtls-hello", ["GatewayCore", "GatewaySessionCore", "GatewaySystem"]),
        fuzzTarget("fuzz-wire", ["GatewayWire", "GatewayCore", "GatewayHostNetwork"]),
        fuzzTarget("fuzz-jwt", ["GatewayAuth", "GatewayWire",
                                .product(name: "Crypto", package: "swift-crypto"),
                                .product(name: "Logging", package: "swift-log")]),
        fuzzTarget("fuzz-strict-json", ["GatewayAuth"]),
        fuzzTarget("fuzz-ticket", ["GatewayAuth", "GatewayWire", .product(name: "Crypto", package: "swift-crypto")]),
        fuzzTarget("fuzz-agent-api", ["GatewayAgentAPI", "GatewayCore"]),
        fuzzTarget("fuzz-proxy-header", ["GatewaySessionCore"]),
    ]
)
