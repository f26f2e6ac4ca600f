// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Updatinator",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Updatinator", targets: ["Updatinator"]),
        .library(name: "UpdatinatorLua", targets: ["UpdatinatorLua"]),
        .library(name: "UpdatinatorServer", targets: ["UpdatinatorServer"]),
        .executable(name: "updatinator", targets: ["updatinator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // The school server's HTTPS (serve --tls-cert); hummingbird's HummingbirdTLS needs it too.
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        // A national server's fleet inventory, shared by its processes (serve --db postgres://…).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // System libraries, each with a shim header for what Swift cannot import.
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Content-pair deltas (prefix mode, as `zstd --patch-from`) and solid batch streams.
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        // Line editing and history for the REPL (BSD-licensed libedit).
        .systemLibrary(name: "CEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        // Linux calls that Swift's Glibc module lacks (extended attributes, O_NOATIME).
        .systemLibrary(name: "CLinux"),
        // The school server's fleet inventory (a national server's may be on PostgreSQL).
        .systemLibrary(name: "CSQLite", providers: [.apt(["libsqlite3-dev"])]),

        // The core: manifests, trees, blobs, signing. No Lua, no HTTP server.
        .target(name: "Updatinator", dependencies: ["CCurl", "CLinux", "CSodium", "CZlib", "CZstd"]),

        // The Lua host: a sandboxed state, the bridge, and the `upd` API over the core.
        .target(name: "UpdatinatorLua", dependencies: ["Updatinator", "CLua"]),

        // The school server and the peer server, on Hummingbird.
        .target(
            name: "UpdatinatorServer",
            dependencies: [
                "Updatinator", "UpdatinatorLua", "CSQLite", "CLinux",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ]),

        // The command-line tool: thin commands over the core.
        .executableTarget(
            name: "updatinator",
            dependencies: [
                "Updatinator",
                "UpdatinatorLua",
                "UpdatinatorServer",
                "CEdit",
                "CLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
            ]),

        // scripts/bench lua: what the Lua layer costs against calling Swift directly.
        .executableTarget(name: "lua-bench", dependencies: ["Updatinator", "UpdatinatorLua"]),

        // scripts/bench server: signed checks made beforehand, which wrk sends in turn.
        .executableTarget(name: "request-bench", dependencies: ["Updatinator"]),

        // scripts/bench apply: the filesystem's floor for moving a tree in place (no verification).
        .executableTarget(name: "apply-floor"),

        // scripts/fleet-sim: a school's light laptops, which check, download and report but apply nothing.
        .executableTarget(name: "fleet-laptops", dependencies: ["Updatinator"]),

        .testTarget(
            name: "UpdatinatorTests",
            dependencies: ["Updatinator", "UpdatinatorLua", "UpdatinatorServer", "updatinator", "CLinux", "CZlib"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "UpdatinatorLuaTests", dependencies: ["UpdatinatorLua", "Updatinator", "CLua"]),
    ],
    swiftLanguageModes: [.v6]
)

// scripts/fuzz: libFuzzer targets over the parsers (Fuzz/), built only when that script names
// libFuzzer's runtime, because the core modules are then instrumented for coverage and ASan.
if let fuzzRuntime = Context.environment["UPDATINATOR_FUZZ_RUNTIME"] {
    let instrumented: [SwiftSetting] = [.unsafeFlags(["-sanitize=fuzzer,address"])]
    for target in package.targets where ["Updatinator", "UpdatinatorLua", "UpdatinatorServer"].contains(target.name) {
        target.swiftSettings = (target.swiftSettings ?? []) + instrumented
    }
    package.targets.append(.executableTarget(
        name: "updatinator-fuzz", dependencies: ["Updatinator", "UpdatinatorServer"], path: "Fuzz", exclude: ["seeds"],
        swiftSettings: instrumented + [.unsafeFlags(["-parse-as-library"])],
        linkerSettings: [.unsafeFlags(["-sanitize=address", "-Xlinker", fuzzRuntime, "-lstdc++"])]))
}
