// swift-tools-version: 6.2
import PackageDescription

// A separate package, so nobody else builds it: `swift run -c release --package-path Benchmarks parley-bench`.
let package = Package(
    name: "ParleyBenchmarks",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "Parley", path: ".."),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
    ],
    targets: [
        .executableTarget(
            name: "parley-bench",
            dependencies: [
                .product(name: "ParleyCore", package: "Parley"),
                .product(name: "ParleyStore", package: "Parley"),
                .product(name: "ParleyClient", package: "Parley"),
                .product(name: "ParleyBucket", package: "Parley"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Sources/ParleyBenchmarks"
        ),
        // The memory baseline: the smallest Swift program that imports Foundation.
        .executableTarget(name: "hello-foundation", path: "Sources/HelloFoundation"),
    ],
    swiftLanguageModes: [.v6]
)
