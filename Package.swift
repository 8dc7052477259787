// swift-tools-version: 6.0
import PackageDescription

// The targets and what each may import: docs/ARCHITECTURE.md, "Layering rules". `scripts/test` builds
// with `-explicit-target-dependency-import-check error`, so an import a target does not declare fails
// the build, and `LayeringTests` checks that the core imports nothing but the standard library.
let package = Package(
    name: "poolvisor",
    products: [
        .executable(name: "poolvisor", targets: ["poolvisor"])
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // The pure core: pools model, the worker and slot machines, the reconciler, autoscaling
        // arithmetic, status. Imports nothing but the standard library and does no I/O.
        .target(name: "PoolvisorCore"),

        // TOML text to a validated `PoolsFile` and its diagnostics: the decoder, `SourceLocator`, the
        // TOMLKit conversion (run in the parser child only).
        .target(
            name: "PoolvisorConfig",
            dependencies: ["PoolvisorCore", .product(name: "TOMLKit", package: "TOMLKit")]
        ),

        // A pools file to and from the cluster engines a team moves to: Kubernetes manifests (with KEDA),
        // the seed Helm chart's values, a Nomad job; and those values back to a pools file. Pure: it
        // reads only a `PoolsFile` (which holds no secret when loaded for export) and YAML text.
        .target(
            name: "PoolvisorExport",
            dependencies: ["PoolvisorCore", .product(name: "Yams", package: "Yams")]
        ),

        // The control protocol's requests and answers, and the JSON they (and the parser child) speak.
        .target(name: "PoolvisorControl", dependencies: ["PoolvisorCore"]),

        // What every edge target needs: errno as an error, the monotonic clock, reading a file safely.
        .target(name: "PoolvisorSystem", dependencies: ["PoolvisorCore"]),

        // The Linux edge: epoll loop, spawn, reap, signals, cgroups, sockets, sd_notify, journald.
        .target(
            name: "PoolvisorLinux",
            dependencies: ["PoolvisorCore", "PoolvisorControl", "PoolvisorSystem", "CShim"]
        ),

        // The queue-depth readers beside the loop: PostgreSQL and Redis, each on its own thread.
        .target(
            name: "PoolvisorScalers",
            dependencies: ["PoolvisorCore", "PoolvisorSystem", "CShim", "CLibPQ", "CHiredis"]
        ),

        // The shell: feeds the edge's events to the core and carries out its actions; loads the
        // pools file (through the parser child).
        .target(
            name: "PoolvisorDaemon",
            dependencies: [
                "PoolvisorCore", "PoolvisorConfig", "PoolvisorControl", "PoolvisorSystem", "PoolvisorLinux",
                "PoolvisorScalers", "CShim",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
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
                "PoolvisorCore", "PoolvisorConfig", "PoolvisorControl", "PoolvisorSystem", "PoolvisorLinux",
                "PoolvisorDaemon", "PoolvisorExport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Real PostgreSQL and Redis servers for the tests: started on loopback on free ports in
        // temporary directories, stopped at the end.
        .target(name: "TestServers", path: "Tests/TestServers"),

        // The core with a fake clock, driven through the real `Shell` (the daemon's action interpreter).
        .testTarget(name: "PoolvisorCoreTests", dependencies: ["PoolvisorCore", "PoolvisorConfig", "PoolvisorControl", "PoolvisorDaemon"]),
        // The export renderers and the Helm values import, on files loaded as the CLI loads them.
        .testTarget(
            name: "PoolvisorExportTests",
            dependencies: ["PoolvisorCore", "PoolvisorConfig", "PoolvisorDaemon", "PoolvisorExport", .product(name: "Yams", package: "Yams")],
            exclude: ["Fixtures"]
        ),
        // The edge's components on real sockets in the test process (`@testable import`).
        .testTarget(
            name: "PoolvisorLinuxTests",
            dependencies: [
                "PoolvisorCore", "PoolvisorConfig", "PoolvisorControl", "PoolvisorSystem", "PoolvisorLinux",
                "PoolvisorScalers", "PoolvisorDaemon", "TestServers",
            ]
        ),
        .testTarget(
            name: "PoolvisorIntegrationTests",
            dependencies: ["PoolvisorCore", "CShim", "TestServers"]
        ),
    ]
)
