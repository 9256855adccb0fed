import Foundation
import PrefabKit
import Synchronization
import Testing

@testable import PrefabGateway

/// The parts of the shared store (`--store`) that need no database: its URL, and the copy of each
/// event the store is handed. What needs PostgreSQL (replicas following, answering, cancelling and
/// taking over each other's calls) is tested for real by scripts/cluster-test.py in CI.
@Suite struct SharedStoreTests {
    @Test(
        arguments: [
            ("postgres://gateway:secret@db.internal:6543/prefab", "db.internal", 6543, "gateway", "secret", "prefab"),
            ("postgresql://127.0.0.1/postgres?sslmode=require", "127.0.0.1", 5432, "postgres", nil, "postgres"),
            ("postgres://u@h", "h", 5432, "u", nil, nil),
        ] as [(String, String, Int, String, String?, String?)])
    func aStoreURLIsRead(
        url: String, host: String, port: Int, user: String, password: String?, database: String?
    ) throws {
        let location = try #require(StoreLocation(url: url))
        #expect(location.host == host)
        #expect(location.port == port)
        #expect(location.username == user)
        #expect(location.password == password)
        #expect(location.database == database)
        #expect(!location.description.contains("secret"))
    }

    @Test(arguments: ["mysql://u@h/db", "postgres:///db", "not a url", "postgres://u@h/db?sslmode=verify-full"])
    func otherURLsAreRefused(url: String) {
        #expect(StoreLocation(url: url) == nil)
    }

    /// The store is handed every event the log appends, the function's and the closing ones, with
    /// its number and its SSE message exactly as a reader gets it.
    @Test func theEventLogHandsEveryMessageToItsMirror() throws {
        let copies = Mutex<[(Int, [UInt8])]>([])
        let log = EventLog(
            flowControl: false, maxEvents: 16, maxBytes: 1 << 20, historyBytes: 1 << 20,
            mirror: { sequence, message in copies.withLock { $0.append((sequence, message)) } })
        for index in 1...3 {
            try log.send { sequence, bytes in
                SSEEncoder.appendEvent(.content("chunk \(index)"), id: sequence, to: &bytes)
            }
        }
        log.sendClosing { sequence, bytes in SSEEncoder.appendEvent(.done(nil), id: sequence, to: &bytes) }
        log.finish()
        var all: [UInt8] = []
        _ = log.attach().takeAvailable(into: &all)
        let mirrored = copies.withLock { $0 }
        #expect(mirrored.map(\.0) == [1, 2, 3, 4])
        #expect(mirrored.flatMap(\.1) == all)
    }

    /// A stored chunk is split back into its messages, each whole, in order.
    @Test func aChunkSplitsIntoItsMessages() {
        var chunk: [UInt8] = []
        let events: [PrefabEvent] = [.content("a\n\nb"), .progress(current: 1, total: 2), .done(nil)]
        for (index, event) in events.enumerated() { SSEEncoder.appendEvent(event, id: index + 1, to: &chunk) }
        let messages = SharedStore.messages(in: String(decoding: chunk, as: UTF8.self))
        #expect(messages.count == 3)
        #expect(messages.flatMap { Array($0) } == chunk)
        #expect(messages.allSatisfy { String(decoding: Array($0), as: UTF8.self).hasPrefix("id: ") })
    }
}
