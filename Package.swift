// swift-tools-version:6.2
import PackageDescription

// Every target of ours is Swift 6 language mode with warnings treated as errors.
let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .treatAllWarnings(as: .error),
    .enableUpcomingFeature("ExistentialAny"),
]

let package = Package(
    name: "mstunnel",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "mstunnel-server", targets: ["mstunnel-server"]),
        .executable(name: "mstunnel-auth", targets: ["mstunnel-auth"]),
        .executable(name: "mst-dev-issuer", targets: ["mst-dev-issuer"]),
        .executable(name: "mst-cli", targets: ["mst-cli"]),
        .executable(name: "mst-loadgen", targets: ["mst-loadgen"]),
        .executable(name: "mstunnel-control", targets: ["mstunnel-control"]),
        .executable(name: "mstunnel-agent", targets: ["mstunnel-agent"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.1.0"),
        // Already in the graph through jwt-kit; named here because GatewayAuth hashes with
        // Crypto and mst-dev-issuer generates RSA keys with CryptoExtras.
        .package(url: "https://github.com/apple/swift-crypto.git", "4.1.0"..<"6.0.0"),
        // Control plane: HTTP(S) server, its CA, its database.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.20.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.80.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.30.0"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.10.0"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.3.0"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.0.0"),
        // The control plane's store when several instances share it (docs/control-plane.md).
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.21.0"),
        // Metrics for Prometheus (docs/metrics.md).
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.1.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.0.0"),
    ],
    targets: [
        // --- C shims: the only places C is imported from.
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CCurl", path: "Sources/CCurl", pkgConfig: "libcurl",
                       providers: [.apt(["libcurl4-openssl-dev"])]),
        .target(name: "CGatewayShims", path: "Sources/CGatewayShims"),
        // libcurl plumbing shared by the auth plugin and the agent.
        .target(name: "GatewayCurl", dependencies: ["CCurl"], swiftSettings: strict),

        // --- Pure libraries (no I/O).
        .target(name: "GatewaySystem", swiftSettings: strict),
        .target(name: "GatewayCore", swiftSettings: strict),
        .target(name: "GatewayWire", swiftSettings: strict),
        // The agent <-> control plane HTTP API bodies, shared by both sides.
        .target(name: "GatewayAgentAPI", dependencies: ["GatewayCore"], swiftSettings: strict),

        // Checks a gateway TLS certificate chain and key (installer, mst-cli import_cert).
        .target(name: "GatewayCertificates", dependencies: [
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),

        // --- I/O libraries.
        .target(name: "GatewayIPC", dependencies: ["GatewaySystem", "GatewayWire", "CGatewayShims"], swiftSettings: strict),
        .target(name: "GatewayUDP", dependencies: ["CGatewayShims"], swiftSettings: strict),
        .target(name: "GatewayTLS", dependencies: ["COpenSSL", "CGatewayShims", "GatewayUDP"], swiftSettings: strict),
        .target(name: "GatewayTUN", dependencies: ["GatewaySystem", "GatewayCore", "CGatewayShims"], swiftSettings: strict),
        .target(name: "GatewayHostNetwork", dependencies: ["GatewaySystem", 
            "GatewayCore", "GatewayWire", "GatewayIPC", "CGatewayShims",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "GatewaySandbox", dependencies: ["GatewaySystem", "CGatewayShims"], swiftSettings: strict),
        .target(name: "GatewaySessionCore", dependencies: ["GatewayCore", "GatewayWire", "GatewaySystem"], swiftSettings: strict),
        .target(name: "GatewayAuth", dependencies: ["GatewaySystem", 
            "GatewayWire", "GatewayIPC", "CCurl", "GatewayCurl", "COpenSSL",
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "GatewayDataplane", dependencies: ["GatewaySystem", 
            "GatewayCore", "GatewayWire", "GatewayIPC", "GatewayTLS", "GatewayTUN", "GatewayUDP", "GatewayHostNetwork", "GatewaySessionCore", "GatewaySandbox", "CGatewayShims",
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "GatewayLogging", dependencies: [
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .target(name: "GatewayLoadgen", dependencies: ["GatewaySystem", 
            "GatewayCore", "GatewayTLS", "CGatewayShims",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        // The control plane: Graph-shaped admin API, agent API, CA, storage.
        .target(name: "GatewayControlPlane", dependencies: ["GatewaySystem", 
            "GatewayCore", "GatewayAgentAPI", "GatewayAuth", "GatewayWire",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTLS", package: "hummingbird"),
            .product(name: "HummingbirdCore", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOTLS", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Logging", package: "swift-log"),
            // The development issuer signs tokens (JWTKit) and hashes local passwords (PBKDF2).
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "CryptoExtras", package: "swift-crypto"),
        ], swiftSettings: strict),
        // The management agent: enrollment, poll loop, outbox, metrics, log upload.
        .target(name: "GatewayAgent", dependencies: ["GatewaySystem", 
            "GatewayCore", "GatewayAgentAPI", "GatewayWire", "GatewayIPC", "CCurl", "GatewayCurl",
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "GRDB", package: "GRDB.swift"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // --- Thin executables.
        .executableTarget(name: "mstunnel-server", dependencies: [
            "GatewayDataplane", "GatewayCore", "GatewayLogging", "GatewayIPC", "GatewayTLS", "GatewayHostNetwork", "GatewaySandbox",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .executableTarget(name: "mstunnel-auth", dependencies: [
            "GatewayAuth", "GatewayIPC", "GatewayWire", "GatewayLogging",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .executableTarget(name: "mst-cli", dependencies: ["GatewaySystem", 
            "GatewayIPC", "GatewayWire", "GatewayCertificates",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .executableTarget(name: "mst-loadgen", dependencies: [
            "GatewayLoadgen", "GatewayWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),
        .executableTarget(name: "mst-dev-issuer", dependencies: ["GatewaySystem", 
            "GatewayWire",
            .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CryptoExtras", package: "swift-crypto"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ], swiftSettings: strict),

        .executableTarget(name: "mstunnel-control", dependencies: [
            "GatewayControlPlane", "GatewayLogging", "GatewayMetrics",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "Metrics", package: "swift-metrics"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        // The gateway's counters as Prometheus metrics, and the plain-HTTP scrape endpoint.
        .target(name: "GatewayMetrics", dependencies: [
            "GatewayWire",
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        .executableTarget(name: "mstunnel-agent", dependencies: [
            "GatewayAgent", "GatewayAgentAPI", "GatewayLogging", "GatewayMetrics", "GatewayWire",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),

        // --- Tests.
        .testTarget(name: "GatewayCoreTests", dependencies: ["GatewayCore", "GatewaySystem", "GatewayTUN"], swiftSettings: strict),
        .testTarget(name: "GatewayCertificatesTests", dependencies: [
            "GatewayCertificates",
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),
        .testTarget(name: "GatewayWireTests", dependencies: ["GatewayWire"],
                    resources: [.copy("Golden")], swiftSettings: strict),
        .testTarget(name: "GatewayIPCTests", dependencies: ["GatewayIPC", "GatewayWire"], swiftSettings: strict),
        .testTarget(name: "GatewayHostNetworkTests", dependencies: ["GatewayHostNetwork", "GatewayWire", "GatewayCore"], swiftSettings: strict),
        .testTarget(name: "GatewaySandboxTests", dependencies: ["GatewaySandbox"], swiftSettings: strict),
        .testTarget(name: "GatewaySessionCoreTests", dependencies: ["GatewaySessionCore", "GatewayCore", "GatewayWire", "GatewayTLS", "GatewaySystem"], swiftSettings: strict),
        .testTarget(name: "GatewayTLSTests", dependencies: ["GatewayTLS", "GatewayUDP", "COpenSSL"], swiftSettings: strict),
        .testTarget(name: "GatewayLoadgenTests", dependencies: ["GatewayLoadgen", "GatewayTLS"], swiftSettings: strict),
        .testTarget(name: "GatewayDataplaneTests", dependencies: ["GatewayDataplane", "GatewayWire"], swiftSettings: strict),
        .testTarget(name: "GatewayAgentAPITests", dependencies: ["GatewayAgentAPI", "GatewayCore"], swiftSettings: strict),
        .testTarget(name: "GatewayControlPlaneTests", dependencies: [
            "GatewayControlPlane", "GatewayAgentAPI", "GatewayCore", "GatewayAuth",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "SwiftASN1", package: "swift-asn1"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRDB", package: "GRDB.swift"),
        ], swiftSettings: strict),
        .testTarget(name: "GatewayAgentTests", dependencies: [
            "GatewayAgent", "GatewayAgentAPI", "GatewayCore", "GatewayWire", "GatewayIPC",
            .product(name: "X509", package: "swift-certificates"),
            .product(name: "Crypto", package: "swift-crypto"),
        ], swiftSettings: strict),
        .testTarget(name: "GatewayMetricsTests", dependencies: [
            "GatewayMetrics", "GatewayWire", .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
        .testTarget(name: "GatewayAuthTests", dependencies: [
            "GatewayAuth", "GatewayWire", "GatewayIPC", .product(name: "JWTKit", package: "jwt-kit"),
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "CryptoExtras", package: "swift-crypto"),
            .product(name: "Logging", package: "swift-log"),
        ], swiftSettings: strict),
    ]
)
