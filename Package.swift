// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "Parley",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ParleyCore", targets: ["ParleyCore"]),
        .library(name: "ParleyStore", targets: ["ParleyStore"]),
        .library(name: "ParleyClient", targets: ["ParleyClient"]),
        .executable(name: "parley", targets: ["parley"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
    ],
    targets: [
        // The protocol: no I/O, no clock, no randomness it is not handed.
        .target(
            name: "ParleyCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        .target(
            name: "ParleyStore",
            dependencies: [
                "ParleyCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        .target(
            name: "ParleyClient",
            dependencies: ["ParleyCore", "ParleyStore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .executableTarget(
            name: "parley",
            dependencies: ["ParleyClient", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .target(
            name: "ParleyTesting",
            dependencies: ["ParleyCore", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "ParleyCoreTests",
            dependencies: ["ParleyCore", "ParleyTesting", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "ParleyStoreTests",
            dependencies: ["ParleyStore", "ParleyTesting"]
        ),
        .testTarget(
            name: "ParleyClientTests",
            dependencies: ["ParleyClient", "ParleyTesting"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
