// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Updatinator",
    platforms: [.macOS(.v13)],
    products: [
        .library(name: "Updatinator", targets: ["Updatinator"]),
        .library(name: "UpdatinatorLua", targets: ["UpdatinatorLua"]),
        .executable(name: "updatinator", targets: ["updatinator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    ],
    targets: [
        // System libraries, each with a shim header for what Swift cannot import.
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4", providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl", providers: [.apt(["libcurl4-openssl-dev"])]),
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // Line editing and history for the REPL (BSD-licensed libedit).
        .systemLibrary(name: "CEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        // Linux calls that Swift's Glibc module lacks (extended attributes, O_NOATIME).
        .systemLibrary(name: "CLinux"),

        // The core: manifests, trees, blobs, signing. No Lua, no HTTP server.
        .target(name: "Updatinator", dependencies: ["CCurl", "CLinux", "CSodium", "CZlib"]),

        // The Lua host: a sandboxed state, the bridge, and the `upd` API over the core.
        .target(name: "UpdatinatorLua", dependencies: ["Updatinator", "CLua"]),

        // The command-line tool: thin commands over the core.
        .executableTarget(
            name: "updatinator",
            dependencies: [
                "Updatinator",
                "UpdatinatorLua",
                "CEdit",
                "CLinux",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        // scripts/bench lua: what the Lua layer costs against calling Swift directly.
        .executableTarget(name: "lua-bench", dependencies: ["Updatinator", "UpdatinatorLua"]),

        .testTarget(
            name: "UpdatinatorTests",
            dependencies: ["Updatinator", "updatinator", "CLinux", "CZlib"],
            resources: [.copy("Fixtures")]),
        .testTarget(name: "UpdatinatorLuaTests", dependencies: ["UpdatinatorLua", "Updatinator", "CLua"]),
    ],
    swiftLanguageModes: [.v6]
)
