import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// What the gateway keeps of finished calls, and that it lets go of the rest: a finished call is
/// reachable at `/invocations/<id>` for `--invocation-retention`, only the newest 10,000 (or
/// 64 MiB of events) are kept, and a forgotten call is released at once, not at its timeout.
@Suite struct InvocationRetentionTests {
    static let invocationID = HTTPField.Name("X-Invocation-Id")!

    /// Weak references to the contexts of the calls a test function ran: a context lives exactly
    /// as long as its invocation (the invocation holds it; the function has returned).
    final class Contexts: Sendable {
        private struct Weak {
            weak var context: PrefabContext?
        }
        private let contexts = Mutex<[Weak]>([])

        func track(_ context: PrefabContext) { contexts.withLock { $0.append(Weak(context: context)) } }
        var tracked: Int { contexts.withLock { $0.count } }
        var alive: Int { contexts.withLock { $0.count { $0.context != nil } } }
    }

    /// `events` content events of `size` bytes each.
    static func burst(_ contexts: Contexts, events: Int = 100, size: Int = 32) -> TestPrefab {
        TestPrefab.streaming("burst") { _, context in
            contexts.track(context)
            let text = String(repeating: "x", count: size)
            for _ in 0..<events { try context.yield(.content(text)) }
        }
    }

    // MARK: Released when forgotten

    /// Before the fix, the timeout's `DispatchWorkItem` held the invocation (and, for a JSON call,
    /// the collected answer) for the whole default timeout of 600 s after the call ended; the
    /// store also kept forgotten calls until 1,024 had piled up. A call forgotten at once
    /// (`maxFinishedInvocations = 0`) must be gone within moments: 2 s is ample on a loaded
    /// machine and 300 times shorter than the timeout.
    @Test(arguments: ["text/event-stream", "application/json"])
    func aFinishedCallIsReleasedAsSoonAsItIsForgottenNotAtItsTimeout(accept: String) async throws {
        let contexts = Contexts()
        try await LiveGateway.run([Self.burst(contexts)], configure: { $0.maxFinishedInvocations = 0 }) { gateway in
            for _ in 0..<3 {
                let reply = try await gateway.invoke("burst", headers: [.accept: accept])
                #expect(reply.status == .ok)
                #expect(reply.text.contains("done"))
            }
            #expect(contexts.tracked == 3)
            #expect(await Probe.eventually(within: .seconds(2)) { contexts.alive == 0 })
        }
    }

    /// A client that left a stream and came back within the grace period gets a timer; a call
    /// that ends before the timer fires must not be kept by it.
    @Test func aCallWhoseClientLeftIsNotKeptByTheResumeGraceTimer() async throws {
        let contexts = Contexts()
        let probe = Probe()
        let waiting = TestPrefab.streaming("waiting") { _, context in
            contexts.track(context)
            try context.yield(.start())
            _ = probe.proceed.wait(timeout: DispatchTime.now() + 10.0)
        }
        try await LiveGateway.run(
            [waiting],
            configure: {
                $0.maxFinishedInvocations = 0
                $0.resumeGrace = .seconds(600)
            }
        ) { gateway in
            let connection = try RawConnection(port: gateway.port)
            try connection.sendPost("/invoke/waiting", json: "{}")
            let seen = try await connection.readOffPool(until: "id: 1\n")
            let id = try #require(seen.firstMatch(of: /"invocation_id":"([0-9a-f]+)"/).map { String($0.1) })
            connection.hangUp()  // the call now waits up to 600 s for the client to resume
            #expect(try await InvocationTests.readersLeft(gateway, id) == 0)
            probe.proceed.signal()
            #expect(await Probe.eventually(within: .seconds(2)) { contexts.alive == 0 })
        }
    }

    // MARK: The store's bounds

    /// `--invocation-retention`: reachable right after the call, forgotten (404, and released)
    /// once the retention is up, even when no request comes in the meantime to notice it.
    /// The retention is 2 s; the call is looked for at once (when that takes under 1 s, as it
    /// nearly always does, it must be found), and released no sooner than 2 s after it was asked
    /// for (it finished after that) and within 6 s of its answer.
    @Test func aFinishedCallIsForgottenAfterTheRetentionPeriod() async throws {
        let contexts = Contexts()
        try await LiveGateway.run([Self.burst(contexts)], configure: { $0.invocationRetention = .seconds(2) }) {
            gateway in
            let asked = ContinuousClock.now
            let reply = try await gateway.invoke("burst")
            let answered = ContinuousClock.now
            let id = try #require(reply.headers[Self.invocationID])
            let status = try await gateway.request(.get, "/invocations/\(id)").status
            if ContinuousClock.now - answered < .seconds(1) { #expect(status == .ok) }
            // No request until it is released: only the store's own timer can forget it.
            #expect(await Probe.eventually(within: .seconds(6)) { contexts.alive == 0 })
            #expect(ContinuousClock.now - asked >= .seconds(2))
            let later = try await gateway.request(.get, "/invocations/\(id)")
            #expect(later.status == .notFound)
            #expect(later.errorCode == "INVOCATION_NOT_FOUND")
        }
    }

    /// `maxFinishedInvocations` (10,000 by default): only the newest are kept.
    @Test func onlyTheNewestFinishedCallsAreKept() async throws {
        let contexts = Contexts()
        try await LiveGateway.run([Self.burst(contexts)], configure: { $0.maxFinishedInvocations = 3 }) { gateway in
            var ids: [String] = []
            for _ in 0..<5 {
                ids.append(try #require(try await gateway.invoke("burst").headers[Self.invocationID]))
            }
            var statuses: [Int] = []
            for id in ids { statuses.append(Int(try await gateway.request(.get, "/invocations/\(id)").status.code)) }
            #expect(statuses == [404, 404, 200, 200, 200])
            #expect(await Probe.eventually(within: .seconds(2)) { contexts.alive == 3 })
        }
    }

    /// `maxFinishedInvocationBytes` (64 MiB by default): the oldest are forgotten once the kept
    /// events pass the bound. Each call keeps 100 events of ~1.1 KB, between 110 and 256 KiB with
    /// its buffer's spare capacity; a 350,000-byte bound keeps one to three of six calls, so the
    /// first three are forgotten and the last is kept. Without the bound all six stay.
    @Test func finishedCallsAreKeptWithinTheirByteBound() async throws {
        let contexts = Contexts()
        try await LiveGateway.run(
            [Self.burst(contexts, events: 100, size: 1024)],
            configure: { $0.maxFinishedInvocationBytes = 350_000 }
        ) { gateway in
            var ids: [String] = []
            for _ in 0..<6 {
                ids.append(try #require(try await gateway.invoke("burst").headers[Self.invocationID]))
            }
            var statuses: [Int] = []
            for id in ids { statuses.append(Int(try await gateway.request(.get, "/invocations/\(id)").status.code)) }
            #expect(statuses.prefix(3) == [404, 404, 404])
            #expect(statuses.last == 200)
            #expect(await Probe.eventually(within: .seconds(2)) { contexts.alive == statuses.count { $0 == 200 } })
        }
    }
}
