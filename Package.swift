// swift-tools-version: 6.0
import PackageDescription

let package = Package(
    name: "poolvisor",
    products: [
        .executable(name: "poolvisor", targets: ["poolvisor"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
    ],
    targets: [
        // The pure core: pools model, validation, environment, backoff, the reconciler.
        // Imports nothing but the standard library and does no I/O.
        .target(name: "PoolvisorCore"),

        // The Linux edge: event loop, spawner, signals, sockets, sd_notify, the pools-file loader,
        // and the daemon shell that wires the core to them.
        .target(
            name: "PoolvisorLinux",
            dependencies: [
                "PoolvisorCore", "CShim", "CLibPQ", "CHiredis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),

        // The one audited C target: syscalls Glibc does not export to Swift, and the vfork+exec spawner.
        // (sd_notify and the journal's stream protocol are spoken directly, without libsystemd.)
        .target(name: "CShim"),

        // Headers only: libpq and hiredis are loaded with dlopen when a pool first uses a PostgreSQL or
        // Redis scaler, so a supervisor without one never maps them (libpq brings libssl and libcrypto).
        // The module maps name no `link`, and there is no `pkgConfig:` either: SwiftPM passes a
        // pkg-config's `--libs` (-lpq, -lhiredis) to every link that uses the module, which would map both
        // libraries (and libssl/libcrypto) into every binary. The headers are found without -I flags.
        .systemLibrary(name: "CLibPQ", providers: [.apt(["libpq-dev"])]),
        .systemLibrary(name: "CHiredis", providers: [.apt(["libhiredis-dev"])]),

        .executableTarget(
            name: "poolvisor",
            dependencies: [
                "PoolvisorCore", "PoolvisorLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Real PostgreSQL and Redis servers for the tests: started on loopback on free ports in
        // temporary directories, stopped at the end.
        .target(name: "TestServers", path: "Tests/TestServers"),

        .testTarget(name: "PoolvisorCoreTests", dependencies: ["PoolvisorCore"]),
        // The edge's components on real sockets in the test process (`@testable import PoolvisorLinux`).
        .testTarget(name: "PoolvisorLinuxTests", dependencies: ["PoolvisorLinux", "PoolvisorCore", "TestServers"]),
        .testTarget(
            name: "PoolvisorIntegrationTests",
            dependencies: ["PoolvisorCore", "CShim", "TestServers"]
        ),
    ]
)
