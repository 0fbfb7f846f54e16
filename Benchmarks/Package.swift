// swift-tools-version: 6.2
import PackageDescription

// A separate package, so nobody else builds it: `swift run -c release --package-path Benchmarks parley-bench`.
let package = Package(
    name: "ParleyBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Parley", path: ".."),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", exact: "2.8.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
    ],
    targets: [
        .executableTarget(
            name: "parley-bench",
            dependencies: [
                .product(name: "ParleyCore", package: "Parley"),
                .product(name: "ParleyStore", package: "Parley"),
                .product(name: "ParleySync", package: "Parley"),
                .product(name: "ParleyClient", package: "Parley"),
                .product(name: "ParleyBucket", package: "Parley"),
                .product(name: "ParleyAPI", package: "Parley"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Sources/ParleyBenchmarks"
        ),
        // The memory baseline: the smallest Swift program that imports Foundation.
        .executableTarget(name: "hello-foundation", path: "Sources/HelloFoundation"),
    ],
    swiftLanguageModes: [.v6]
)
