import Foundation
import PrefabKit
import Testing

@testable import PrefabGateway

/// When the gateway gives back what a busy spell brought in: once per quiet spell, only after
/// `after` with no call started or running.
struct QuietSpellTests {
    typealias Activity = QuietSpell.Activity

    /// What `hasBegun` says to each look: an activity, seconds after the first look.
    static func looks(_ looks: [(Activity, Double)]) -> [Bool] {
        var spell = QuietSpell(after: .seconds(5))
        let start = ContinuousClock.now
        return looks.map { activity, seconds in spell.hasBegun(activity, at: start + .seconds(seconds)) }
    }

    @Test func aSpellBeginsOnceAfterItsTimeWithNothingStartedOrRunning() {
        let busy = Activity(started: 10, running: 2)
        let idle = Activity(started: 12, running: 0)
        let said = Self.looks([
            (busy, 0), (busy, 10),  // calls running: never quiet
            (idle, 11),  // the quiet begins here
            (idle, 15.9), (idle, 16),
            (idle, 17), (idle, 60),  // once per spell
        ])
        #expect(said == [false, false, false, false, true, false, false])
    }

    /// A call that started and ended between two looks still ends the spell: the count moved.
    @Test func aCallBetweenTwoLooksEndsTheSpell() {
        let said = Self.looks([
            (Activity(started: 1, running: 0), 0), (Activity(started: 1, running: 0), 5),
            (Activity(started: 2, running: 0), 6), (Activity(started: 2, running: 0), 10),
            (Activity(started: 2, running: 0), 11),
        ])
        #expect(said == [false, true, false, false, true])
    }

    /// The gateway counts every call it starts, and those still running.
    @Test func theGatewayReportsItsCalls() async throws {
        try await LiveGateway.run([StreamingTests.count]) { gateway in
            let before = gateway.loaded.callActivity
            _ = try await gateway.invoke("count")
            let after = gateway.loaded.callActivity
            #expect(after.started == before.started + 1)
            #expect(after.running == 0)
        }
    }
}
