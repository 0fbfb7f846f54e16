// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "Parley",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "ParleyCore", targets: ["ParleyCore"]),
        .library(name: "ParleySync", targets: ["ParleySync"]),
        .library(name: "ParleyStore", targets: ["ParleyStore"]),
        .library(name: "ParleyBucket", targets: ["ParleyBucket"]),
        .library(name: "ParleyClient", targets: ["ParleyClient"]),
        .library(name: "ParleyAPI", targets: ["ParleyAPI"]),
        .library(name: "ParleyRelay", targets: ["ParleyRelay"]),
        .library(name: "ParleyRelayClient", targets: ["ParleyRelayClient"]),
        .library(name: "ParleyTerminalUI", targets: ["ParleyTerminalUI"]),
        .executable(name: "parley", targets: ["parley"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", exact: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
        .package(url: "https://github.com/swift-server/async-http-client.git", exact: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", exact: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", exact: "2.8.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/vapor/postgres-nio.git", exact: "1.33.2"),
    ],
    targets: [
        // The protocol: no I/O, no clock, no randomness it is not handed.
        .target(
            name: "ParleyCore",
            dependencies: [.product(name: "Crypto", package: "swift-crypto")]
        ),
        // What a transport is, what it may ask of the node, and what every transport shares for reading untrusted
        // input: no I/O.
        .target(name: "ParleySync", dependencies: ["ParleyCore"]),
        // SQLite's process-wide settings, through its variadic sqlite3_config.
        .target(name: "CSQLiteTuning", dependencies: [.product(name: "GRDBSQLite", package: "GRDB.swift")]),
        // glibc's malloc thresholds, for the executable (malloc.h's mallopt is not imported into Swift).
        .target(name: "CProcessTuning"),
        .target(
            name: "ParleyStore",
            dependencies: [
                "ParleyCore", "ParleySync", "CSQLiteTuning", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ]
        ),
        // zlib, for gzip-compressed log files.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Argon2id for passphrases (key backups, pre-shared-key rooms): Debian's libargon2-dev.
        .systemLibrary(name: "CArgon2", path: "Sources/CArgon2"),
        // Argon2id for passphrases and account passwords, over CArgon2.
        .target(name: "ParleyArgon2", dependencies: ["ParleyCore", "CArgon2"]),
        // Object stores (a folder, S3 over SigV4) and the bucket layout: moves bytes, never interprets events.
        .target(
            name: "ParleyBucket",
            dependencies: [
                "ParleyCore", "ParleySync", "CZlib", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "ParleyClient",
            dependencies: [
                "ParleyCore", "ParleySync", "ParleyStore", "ParleyBucket", "ParleyRelayClient", "ParleyPeer", "ParleyArgon2",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ]
        ),
        // The node's local HTTP + WebSocket API, for UIs: uses only ParleyClient's public API.
        .target(
            name: "ParleyAPI",
            dependencies: [
                "ParleyClient", .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"), .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"), .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            // The browser UI, compiled into the binary: nothing to install or find at run time.
            resources: [
                .embedInCode("Web/index.html"), .embedInCode("Web/app.js"), .embedInCode("Web/app.css"), .embedInCode("Web/demo.html"),
                .embedInCode("Web/demo.js"), .embedInCode("Web/demo.css"),
            ]
        ),
        // The relay server as a library: accounts, the WebSocket protocol, fan-out; judges events with the node's store.
        .target(
            name: "ParleyRelay",
            dependencies: [
                "ParleyCore", "ParleySync", "ParleyStore", "ParleyArgon2", "ParleyBucket", .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Hummingbird", package: "hummingbird"), .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HummingbirdTLS", package: "hummingbird"), .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"), .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Metrics", package: "swift-metrics"), .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "TOMLKit", package: "TOMLKit"), .product(name: "PostgresNIO", package: "postgres-nio"),
            ]
        ),
        // The relay transport: a node's WebSocket client of relays, and the accounts API; never the store or the node.
        .target(
            name: "ParleyRelayClient",
            dependencies: [
                "ParleyCore", "ParleySync", .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // The peer transport: devices syncing rooms directly over UDP; never the store or the node.
        .target(
            name: "ParleyPeer",
            dependencies: [
                "ParleyCore", "ParleySync", .product(name: "Crypto", package: "swift-crypto"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // ncursesw from the system (Debian's libncurses-dev): the terminal UI's screen and keyboard.
        .systemLibrary(name: "CNCurses", path: "Sources/CNCurses", providers: [.apt(["libncurses-dev"])]),
        // The terminal UI (`parley chat`): a client of the node's local API, like the web page; never the store or keys.
        .target(
            name: "ParleyTerminalUI",
            dependencies: [
                "CNCurses", "ParleyClient", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "parley",
            dependencies: [
                "ParleyClient", "ParleyAPI", "ParleyRelay", "ParleyTerminalUI", "CProcessTuning",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "ParleyTesting",
            dependencies: [
                "ParleyCore", "ParleyBucket", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(
            name: "ParleyCoreTests",
            dependencies: ["ParleyCore", "ParleyTesting", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(name: "ParleySyncTests", dependencies: ["ParleySync"]),
        .testTarget(name: "ParleyPeerTests", dependencies: ["ParleyPeer", "ParleyTesting"]),
        .testTarget(
            name: "ParleyStoreTests",
            dependencies: ["ParleyStore", "ParleySync", "ParleyTesting", .product(name: "GRDB", package: "GRDB.swift")]
        ),
        .testTarget(
            name: "ParleyBucketTests",
            dependencies: ["ParleyBucket", "ParleyTesting", .product(name: "Crypto", package: "swift-crypto")]
        ),
        .testTarget(
            name: "ParleyAPITests",
            dependencies: [
                "ParleyAPI", "ParleyClient", "ParleyTesting", .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"), .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOPosix", package: "swift-nio"), .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "ParleyRelayTests",
            dependencies: [
                "ParleyRelay", "ParleyRelayClient", "ParleyStore", "ParleySync", "ParleyTesting", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"), .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"), .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ]
        ),
        .testTarget(name: "ParleyTerminalUITests", dependencies: ["ParleyTerminalUI", "ParleyClient", "ParleyTesting"]),
        .testTarget(
            name: "ParleyClientTests",
            dependencies: [
                "ParleyClient", "ParleySync", "ParleyPeer", "ParleyTesting", "ParleyArgon2", .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
