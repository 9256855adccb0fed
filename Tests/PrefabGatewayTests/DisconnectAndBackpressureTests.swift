import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Testing

/// A client that leaves stops the function (streams and JSON answers alike); a client that stops
/// reading blocks it.
@Suite(.timeLimit(.minutes(1))) struct DisconnectAndBackpressureTests {
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

    /// Hangs up on a running call and checks that its function stops with `CANCELLED` within 4 s
    /// (milliseconds when the machine is idle; 2.3 s was seen with the load average at 15).
    static func hangUp(_ connection: RawConnection, stopping probe: Probe) async {
        #expect(probe.stoppedWith == nil)
        let left = ContinuousClock.now
        connection.hangUp()
        #expect(await Probe.eventually { probe.stoppedWith != nil })
        #expect(probe.stoppedWith == "CANCELLED")
        #expect(ContinuousClock.now - left < .seconds(4))
    }

    @Test func aClientThatDisconnectsStopsTheFunctionAtItsNextYield() async throws {
        let probe = Probe()
        try await LiveGateway.run([Self.endless(probe, payload: "tick", pause: 0.02)]) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/endless", json: #"{"inputs": {}}"#)
            _ = try await connection.readOffPool(until: "\"tick\"")
            await Self.hangUp(connection, stopping: probe)
            // It stays stopped: no yields after the cancel.
            let yields = probe.yields
            try await Task.sleep(for: .milliseconds(200))
            #expect(probe.yields == yields)
        }
    }

    /// Counts itself as waiting, waits in `context.sleep` (which a cancel interrupts), then
    /// records why it stopped. Whatever throws first — the sleep, or the yield of a call whose
    /// client left before the function ran — is recorded.
    /// `quick` answers "done" at once, `slow` after 1 s.
    /// `slow` takes 3 s, six times the tests' 500 ms quick-answer window: an answer is sent with
    /// what has come by the time the gateway's waiting task runs again, which on a loaded machine
    /// (the whole suite at once) came over 500 ms late, after a 1 s call had ended.
    static var quickAndSlow: [TestPrefab] {
        [
            TestPrefab.result("quick") { _, _ in "done" },
            TestPrefab.result("slow") { _, context in
                try context.sleep(for: .seconds(3))
                return "done"
            },
        ]
    }

    static func slowResult(_ probe: Probe) -> TestPrefab {
        .result("slow") { _, context in
            do {
                probe.countYield()
                try context.sleep(for: .seconds(60))
                return "slept"
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
                throw error
            }
        }
    }

    static func slowStream(_ probe: Probe) -> TestPrefab {
        .streaming("slow") { _, context in
            do {
                try context.yield(.content("waiting"))
                probe.countYield()
                try context.sleep(for: .seconds(60))
            } catch let error as PrefabError {
                probe.stop(with: error.code.rawValue)
                throw error
            }
        }
    }

    /// A client waiting for one JSON answer (a non-streaming function, or a stream collected with
    /// `Accept: application/json`) that hangs up stops the call: it would otherwise hold its slot
    /// until its timeout.
    @Test(arguments: [("result", ""), ("collected", "Accept: application/json\r\n")])
    func aClientThatHangsUpOnAJSONAnswerStopsTheCall(kind: String, header: String) async throws {
        let probe = Probe()
        let prefab = kind == "result" ? Self.slowResult(probe) : Self.slowStream(probe)
        try await LiveGateway.run([prefab]) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/slow", json: #"{"inputs": {}}"#, headers: header)
            // The hang-up comes once the function waits (not after a fixed pause, which a loaded
            // machine can outrun).
            #expect(await Probe.eventually { probe.yields == 1 })
            await Self.hangUp(connection, stopping: probe)
        }
    }

    @Test func aJSONAnswerClosesItsConnectionWhenTheRequestSaysClose() async throws {
        // A wide window, so that the quick call is quick even on a loaded machine.
        try await LiveGateway.run(Self.quickAndSlow, configure: { $0.quickAnswerWindow = .milliseconds(500) }) {
            gateway in
            let quickReply = try await gateway.invoke("quick")
            #expect(quickReply.json?["result"] == "done")
            #expect(quickReply.headers[.connection] != "close")
            let slowReply = try await gateway.invoke("slow", headers: [.connection: "close"])
            #expect(slowReply.json?["result"] == "done")
            #expect(slowReply.headers[.connection] == "close")
        }
    }

    /// HTTP/1.1 keeps a connection unless the request says `close`: a client that sends no
    /// `Connection` header (Go's, Rust's, curl) must not pay a new connection per slow call.
    @Test(arguments: ["", "Connection: keep-alive\r\n"])
    func aJSONAnswerThatTakesAWhileKeepsItsConnection(header: String) async throws {
        try await LiveGateway.run(Self.quickAndSlow, configure: { $0.quickAnswerWindow = .milliseconds(500) }) {
            gateway in
            let connection = try RawConnection(port: gateway.port)
            for name in ["slow", "quick", "slow"] {
                try connection.sendPost("/invoke/\(name)", json: #"{"inputs": {}}"#, headers: header)
                let answer = try await connection.readOffPool(until: #""result":"done""#).lowercased()
                #expect(answer.contains("http/1.1 200 ok"), "\(name): \(answer)")
                #expect(!answer.contains("connection: close"), "\(name): \(answer)")
            }
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
            // Wait until the count has not moved for 2 s. Half a second was too short on a loaded
            // machine: a producer still filling the socket buffers was kept off the CPU that long
            // (21 yields, then 25 a second later).
            var settled = -1
            var quietSamples = 0
            for _ in 0..<60 where quietSamples < 4 {
                try await Task.sleep(for: .milliseconds(500))
                quietSamples = probe.yields == settled ? quietSamples + 1 : 0
                settled = probe.yields
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
