// swift-tools-version:6.1
import PackageDescription

let strictSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "prefab-gateway",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "PrefabKit", targets: ["PrefabKit"]),
        .library(name: "PrefabGateway", targets: ["PrefabGateway"]),
        .executable(name: "prefab-gateway", targets: ["prefab-gateway"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        // NIOHTTPTypes: the HTTP parts Hummingbird's pipeline carries, which `InvokeFastPath` reads.
        .package(url: "https://github.com/apple/swift-nio-extras", from: "1.35.2"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket", from: "2.8.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/modelcontextprotocol/swift-sdk", from: "0.12.1"),
        // The shared invocation store of a cluster (`--store postgres://…`, docs/deployment.md).
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
        // Documentation only (`swift package generate-documentation`): no target depends on it.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The prefab author's library: no package dependencies.
        .target(name: "PrefabKit", dependencies: [], swiftSettings: strictSettings),
        // Starting child processes: vfork/exec with the control Foundation's `Process` lacks.
        .target(name: "CProcessSpawn"),
        .target(
            name: "PrefabGateway",
            dependencies: [
                "PrefabKit",
                "CProcessSpawn",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "MCP", package: "swift-sdk"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            resources: [.copy("Runtimes/Process/prefab_runner.py"), .copy("HTTP/Playground/playground")],
            swiftSettings: strictSettings
        ),
        // Swift prefabs: every folder under prefabs/ with Swift sources; the plugin registers them.
        .target(
            name: "Prefabs",
            dependencies: ["PrefabKit"],
            path: "prefabs",
            swiftSettings: strictSettings,
            plugins: ["PrefabRegistryPlugin"]
        ),
        // Benchmark prefabs, loaded only when the gateway is pointed at bench/prefabs.
        .target(
            name: "BenchPrefabs",
            dependencies: ["PrefabKit"],
            path: "bench/prefabs",
            swiftSettings: strictSettings,
            plugins: ["PrefabRegistryPlugin"]
        ),
        .executableTarget(
            name: "PrefabRegistryGenerator",
            dependencies: ["PrefabKit"],
            swiftSettings: strictSettings
        ),
        .plugin(
            name: "PrefabRegistryPlugin",
            capability: .buildTool(),
            dependencies: ["PrefabRegistryGenerator"]
        ),
        // The terminal client's logic (`prefab-gateway invoke`), testable without a terminal.
        .target(
            name: "PrefabClient",
            dependencies: [
                "PrefabKit",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: strictSettings
        ),
        .executableTarget(
            name: "prefab-gateway",
            dependencies: [
                "PrefabGateway",
                "PrefabClient",
                "Prefabs",
                "BenchPrefabs",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strictSettings
        ),
        .testTarget(name: "PrefabKitTests", dependencies: ["PrefabKit"], swiftSettings: strictSettings),
        .testTarget(
            name: "PrefabsTests", dependencies: ["Prefabs", "BenchPrefabs", "PrefabKit"], swiftSettings: strictSettings),
        .testTarget(
            name: "PrefabClientTests", dependencies: ["PrefabClient", "PrefabKit"], swiftSettings: strictSettings),
        .testTarget(
            name: "PrefabGatewayTests",
            dependencies: [
                "PrefabGateway",
                "PrefabKit",
                "Prefabs",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
            ],
            swiftSettings: strictSettings
        ),
    ]
)
