import Foundation
import PrefabGateway
import PrefabKit
import Testing

/// A client that leaves stops the function; a client that stops reading blocks it.
@Suite struct DisconnectAndBackpressureTests {
    /// Yields until `yield` throws, then records why it stopped.
    static func endless(_ probe: Probe, payload: String, pause: TimeInterval) -> TestPrefab {
        .streaming("endless") { _, context in
            do {
                while true {
                    try context.yield(.content(payload))
                    probe.countYield()
                    if pause > 0 { Thread.sleep(forTimeInterval: pause) }
                }
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
                throw error
            }
        }
    }

    @Test func aClientThatDisconnectsStopsTheFunctionAtItsNextYield() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.endless(probe, payload: "tick", pause: 0.02)]) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/endless", json: #"{"inputs": {}}"#)
            _ = try await connection.readOffPool(until: "\"tick\"")
            #expect(probe.stoppedWith == nil)
            let left = ContinuousClock.now
            connection.hangUp()
            #expect(await Probe.eventually { probe.stoppedWith != nil })
            #expect(probe.stoppedWith == "CANCELLED")
            #expect(ContinuousClock.now - left < .seconds(2))
            // It stays stopped: no yields after the cancel.
            let yields = probe.yields
            try await Task.sleep(for: .milliseconds(200))
            #expect(probe.yields == yields)
        }
    }

    @Test func aClientThatStopsReadingBlocksTheFunctionWithBoundedMemory() async throws {
        let probe = Probe()
        let payload = String(repeating: "x", count: 64 * 1024)
        let buffered = 16
        try await LiveGateway.run(
            [Self.endless(probe, payload: payload, pause: 0)],
            configure: {
                $0.streamBufferEvents = buffered
                $0.streamBufferBytes = 1 << 20
            }
        ) { gateway in
            let connection = try RawConnection(port: gateway.port, receiveBuffer: 64 * 1024)
            try connection.sendPost("/invoke/endless", json: #"{"inputs": {}}"#)
            _ = try await connection.readOffPool(until: "\r\n\r\n")
            // The client reads nothing more. The function fills the hand-off buffer and the
            // socket buffers, then blocks in `yield`.
            #expect(await Probe.eventually { probe.yields > buffered })
            // Wait until the count stops moving for half a second.
            var settled = -1
            for _ in 0..<40 where probe.yields != settled {
                settled = probe.yields
                try await Task.sleep(for: .milliseconds(500))
            }
            let blockedAt = probe.yields
            try await Task.sleep(for: .seconds(1))
            #expect(probe.yields == blockedAt)
            // 16 buffered events plus kernel socket buffers: a few MB, not the gigabytes an
            // unbounded queue would reach in this time.
            let heldBytes = blockedAt * payload.utf8.count
            #expect(heldBytes < 48 << 20, "held \(heldBytes) bytes in \(blockedAt) events")
            #expect(probe.stoppedWith == nil)
            connection.hangUp()
            #expect(await Probe.eventually { probe.stoppedWith == "CANCELLED" })
        }
    }
}
