// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "MaskShopGateway",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "gateway", targets: ["gateway"]),
        .executable(name: "maskshop", targets: ["maskshop"]),
        .executable(name: "loadtest", targets: ["loadtest"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.3.0"),
        .package(url: "https://github.com/apple/swift-collections", from: "1.1.0"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing", from: "1.3.0"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        // One-line CLI errors for the three executables.
        .target(
            name: "CLISupport",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // HTTP/1.1 heads and body framing at the byte level, shared by the gateway and loadtest.
        .target(
            name: "HTTP1Wire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // W3C trace context values and OTLP/HTTP JSON span export, shared by the gateway and the shop.
        .target(
            name: "TraceWire",
            dependencies: [.product(name: "DequeModule", package: "swift-collections")]
        ),
        // Sending on a connection's socket directly when NIO has nothing queued for it.
        .target(
            name: "DirectIO",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        // The gateway's data plane: config model -> listener -> router -> policies -> cluster -> upstream.
        .target(
            name: "GatewayCore",
            dependencies: [
                "HTTP1Wire",
                "TraceWire",
                "DirectIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOHTTP2", package: "swift-nio-http2"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "DequeModule", package: "swift-collections"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: [
                // The data plane's state is confined to one event loop per object; runtime
                // exclusivity checks cost ~2% of a proxied request in profiles.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))
            ]
        ),
        .executableTarget(
            name: "gateway",
            dependencies: [
                "CLISupport",
                "GatewayCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "LoadTestCore",
            dependencies: [
                "HTTP1Wire",
                "DirectIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            swiftSettings: [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]
        ),
        .executableTarget(
            name: "loadtest",
            dependencies: [
                "CLISupport",
                "LoadTestCore",
                // `--sweep --explain-config`: the gateway's own config loader and breaker model.
                "GatewayCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "MaskShop",
            dependencies: [
                "TraceWire",
                // Hummingbird's TracingMiddleware speaks swift-distributed-tracing (already in
                // Hummingbird's graph: no new package).
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "maskshop",
            dependencies: [
                "CLISupport",
                "MaskShop",
                // `maskshop up` runs the gateway binary beside it: building maskshop (as
                // `swift run maskshop up` does) builds the gateway too.
                "gateway",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "GatewayCoreTests",
            dependencies: [
                "GatewayCore",
                "HTTP1Wire",
                "TraceWire",
                .product(name: "NIOEmbedded", package: "swift-nio"),
                // llhttp, the reference the parser's differential test compares against.
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ]
        ),
        .testTarget(
            name: "GatewayIntegrationTests",
            dependencies: [
                "GatewayCore",
                "TraceWire",
                "DirectIO",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .testTarget(
            name: "LoadTestTests",
            dependencies: [
                "LoadTestCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Atomics", package: "swift-atomics"),
            ]
        ),
        .testTarget(
            name: "MaskShopTests",
            dependencies: [
                "MaskShop",
                "TraceWire",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
