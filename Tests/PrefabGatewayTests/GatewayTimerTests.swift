import Foundation
import Synchronization
import Testing

@testable import PrefabGateway

/// The gateway's one-shot timers: each fires once at its deadline unless cancelled, a cancel lets
/// go of the action at once, and a deadline earlier than every other one is not kept waiting.
@Suite(.timeLimit(.minutes(1))) struct GatewayTimerTests {
    /// 400 timers with deadlines spread over 200 ms, every other one cancelled: exactly the others
    /// fire, none before its deadline. The deadlines start 250 ms out: a cancel only stops a timer
    /// that has not fired yet, and scheduling and cancelling them all takes a few milliseconds
    /// (a CI run with deadlines from 0 ms saw a 1 ms timer fire before its cancel).
    @Test func exactlyTheTimersNotCancelledFireAndNoneEarly() async throws {
        final class Fired: Sendable { let times = Mutex<[Int: ContinuousClock.Instant]>([:]) }
        let fired = Fired()
        let start = ContinuousClock.now
        let delays = (0..<400).map { Duration.milliseconds(250 + ($0 * 37) % 200) }
        let timers = delays.enumerated().map { index, delay in
            GatewayTimer.schedule(after: delay) { fired.times.withLock { $0[index] = .now } }
        }
        for index in stride(from: 1, to: timers.count, by: 2) { timers[index].cancel() }
        // Until the 200 kept ones have fired (a loaded machine runs them late), then a while more
        // for any cancelled one that would fire wrongly.
        let deadline = ContinuousClock.now + .seconds(20)
        while fired.times.withLock({ $0.count }) < 200, ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await Task.sleep(for: .milliseconds(300))
        let times = fired.times.withLock { $0 }
        #expect(Set(times.keys) == Set(stride(from: 0, to: 400, by: 2)))
        for (index, time) in times { #expect(time - start >= delays[index]) }
    }

    /// A timer scheduled after a later one fires at its own deadline: the waiting thread is woken
    /// for it. Without that wake it would fire with the 30 s one. The bound, 5 s, is far above a
    /// loaded machine's delay and far below 30 s.
    @Test func anEarlierDeadlineIsNotKeptWaitingByALaterOne() async throws {
        let late = GatewayTimer.schedule(after: .seconds(30)) {}
        defer { late.cancel() }
        try await Task.sleep(for: .milliseconds(20))  // the timer thread now waits for 30 s
        let start = ContinuousClock.now
        let firedAfter: Duration = await withCheckedContinuation { continuation in
            GatewayTimer.schedule(after: .milliseconds(50)) { continuation.resume(returning: .now - start) }
        }
        #expect(firedAfter >= .milliseconds(50))
        #expect(firedAfter < .seconds(5))
    }

    /// With no timer left, the thread lingers 250 ms before it waits without a deadline, and a
    /// timer due after the linger does not wake it: it still fires on time, once the linger ends.
    /// Scheduled into an empty heap just after one fired, 400 ms out: without the linger's end
    /// the thread would wait for a signal that never comes, and the timer would not fire at all;
    /// 5 s is far above a loaded machine's delay.
    @Test func aTimerDueAfterTheLingerFiresOnTime() async throws {
        await withCheckedContinuation { continuation in
            GatewayTimer.schedule(after: .milliseconds(1)) { continuation.resume() }
        }
        let start = ContinuousClock.now
        final class Fired: Sendable { let at = Mutex<ContinuousClock.Instant?>(nil) }
        let fired = Fired()
        let timer = GatewayTimer.schedule(after: .milliseconds(400)) { fired.at.withLock { $0 = .now } }
        defer { timer.cancel() }
        // Polled, not awaited: a timer that never fires must fail the test, not hang it.
        while fired.at.withLock({ $0 }) == nil, ContinuousClock.now - start < .seconds(5) {
            try await Task.sleep(for: .milliseconds(10))
        }
        let firedAfter = try #require(fired.at.withLock { $0 }) - start
        #expect(firedAfter >= .milliseconds(400))
    }

    /// A cancelled timer's action, and what it holds (an invocation and its events, say), is
    /// released at the cancel, not at the deadline.
    @Test func aCancelledTimerLetsGoOfItsActionAtOnce() {
        final class Held: Sendable {}
        weak var weakHeld: Held?
        let timer: GatewayTimer = {
            let held = Held()
            weakHeld = held
            return GatewayTimer.schedule(after: .seconds(600)) { _ = held }
        }()
        #expect(weakHeld != nil)
        timer.cancel()
        #expect(weakHeld == nil)
    }
}
