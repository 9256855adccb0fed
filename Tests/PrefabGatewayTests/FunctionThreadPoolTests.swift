import Dispatch
import Foundation
import Synchronization
import Testing

@testable import PrefabGateway

/// The pool hands each piece of work to exactly one thread, refuses past its limit, reuses idle
/// threads and lets them end when idle long enough.
@Suite(.timeLimit(.minutes(1))) struct FunctionThreadPoolTests {
    /// 20,000 pieces of work submitted from four threads at once, while threads finish, look for
    /// work and sleep: each runs once (a lost hand-off leaves the count short and the wait times
    /// out; a doubled one counts past the total).
    @Test func everyPieceOfWorkRunsExactlyOnce() async throws {
        let maxThreads = 64
        let pool = FunctionThreadPool(maxThreads: maxThreads, stackSize: 512 << 10, idleTimeout: 5)
        let perSubmitter = 5_000
        let submitters = 4
        let total = perSubmitter * submitters
        // At most 32 pieces in flight, so the 64 threads never all run at once: a refusal is a
        // defect, not load.
        let inFlight = 32
        let slots = DispatchSemaphore(value: inFlight)
        let ran = Atomic<Int>(0)
        let refused = Atomic<Int>(0)
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.concurrentPerform(iterations: submitters) { _ in
            for _ in 0..<perSubmitter {
                slots.wait()
                let accepted = pool.submit {
                    if ran.add(1, ordering: .relaxed).newValue == total { done.signal() }
                    slots.signal()
                }
                if !accepted {
                    refused.add(1, ordering: .relaxed)
                    slots.signal()
                }
            }
        }
        #expect(refused.load(ordering: .relaxed) == 0)
        #expect(done.wait(timeout: .now() + 30) == .success)
        try await Task.sleep(for: .milliseconds(100))
        #expect(ran.load(ordering: .relaxed) == total)
        #expect(pool.running == 0)
        // A thread is started only when none is idle, so there are never more than were busy at
        // once, at most `maxThreads`. Not `inFlight`: a piece frees its slot before its thread
        // counts as idle, and a thread preempted in between lets the next piece start another
        // (seen: 38 threads for 32 slots, one run in three on a loaded machine). A pool that
        // started a thread while others were idle would keep hundreds (20,000 pieces, idle 5 s).
        #expect(pool.threads <= maxThreads)
    }

    @Test func workPastTheLimitIsRefusedUntilAThreadComesFree() throws {
        let pool = FunctionThreadPool(maxThreads: 2, stackSize: 512 << 10, idleTimeout: 5)
        let release = DispatchSemaphore(value: 0)
        let started = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        Self.submitWaiting(2, to: pool, gate: release, started: started, done: finished)
        for _ in 0..<2 { #expect(started.wait(timeout: .now() + 10) == .success) }
        #expect(!pool.submit {})
        #expect(pool.running == 2)
        release.signal()
        #expect(finished.wait(timeout: .now() + 10) == .success)
        // The freed thread takes the next piece of work; no third thread is started for it.
        let ranNext = DispatchSemaphore(value: 0)
        var accepted = false
        for _ in 0..<1_000 where !accepted {
            accepted = pool.submit { ranNext.signal() }
            if !accepted { usleep(1_000) }  // `busy` drops just after the work returns
        }
        #expect(accepted)
        #expect(ranNext.wait(timeout: .now() + 10) == .success)
        #expect(pool.threads == 2)
        release.signal()
        #expect(finished.wait(timeout: .now() + 10) == .success)
    }

    @Test func idleThreadsEndAndThePoolStillServes() async throws {
        let pool = FunctionThreadPool(maxThreads: 8, stackSize: 512 << 10, idleTimeout: 0.2)
        let gate = DispatchSemaphore(value: 0)
        let ran = DispatchSemaphore(value: 0)
        Self.submitWaiting(4, to: pool, gate: gate, done: ran)
        for _ in 0..<4 { gate.signal() }
        for _ in 0..<4 { #expect(ran.wait(timeout: .now() + 10) == .success) }
        #expect(pool.threads == 4)
        // Idle 0.2 s, they end; the bound allows for a slow machine.
        var threads = pool.threads
        for _ in 0..<100 where threads > 0 {
            try await Task.sleep(for: .milliseconds(50))
            threads = pool.threads
        }
        #expect(threads == 0)
        #expect(pool.submit { ran.signal() })
        #expect(ran.wait(timeout: .now() + 10) == .success)
    }

    /// Submits `count` pieces of work that each signal `started`, wait for `gate`, then signal
    /// `done`; each must be accepted.
    private static func submitWaiting(
        _ count: Int,
        to pool: FunctionThreadPool,
        gate: DispatchSemaphore,
        started: DispatchSemaphore? = nil,
        done: DispatchSemaphore
    ) {
        for _ in 0..<count {
            let accepted = pool.submit {
                started?.signal()
                gate.wait()
                done.signal()
            }
            #expect(accepted)
        }
    }
}
