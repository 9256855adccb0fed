import Foundation
import PrefabKit
import Synchronization

/// Decides when a call may start: at most `maxRunning` calls in all and a function's
/// `max_concurrency` of its own. A call past either limit waits in a short queue, first come
/// first served, and is refused once the queue is full or its wait runs out — never an unbounded
/// pile of waiting threads or processes.
final class AdmissionControl: Sendable {
    /// Why a call was not admitted.
    enum Refusal: Error {
        case queueFull, waitedTooLong
    }

    private struct Waiter {
        var id: Int
        var function: String
        var limit: Int?
        var continuation: CheckedContinuation<Void, any Error>
        /// Refuses the waiter after `queueTimeout`; cancelled when it is admitted.
        var timer: GatewayTimer?
    }

    private struct State {
        var running = 0
        var runningByFunction: [String: Int] = [:]
        var waiters: [Waiter] = []
        var nextWaiter = 0

        func hasRoom(_ function: String, limit: Int?, maxRunning: Int) -> Bool {
            running < maxRunning && (limit.map { runningByFunction[function, default: 0] < $0 } ?? true)
        }

        mutating func admit(_ function: String) {
            running += 1
            runningByFunction[function, default: 0] += 1
        }
    }

    private let state = Mutex(State())
    let maxRunning: Int
    let maxQueued: Int
    let queueTimeout: Duration

    init(maxRunning: Int, maxQueued: Int, queueTimeout: Duration) {
        self.maxRunning = max(1, maxRunning)
        self.maxQueued = max(0, maxQueued)
        self.queueTimeout = queueTimeout
    }

    /// Calls running now.
    var running: Int { state.withLock { $0.running } }

    /// Calls waiting for a slot now.
    var queued: Int { state.withLock { $0.waiters.count } }

    /// Returns once the call may start; each admission is ended by one `release`.
    func admit(_ function: String, limit: Int?) async throws(Refusal) {
        // Nobody overtakes a waiter of the same function.
        if tryAdmit(function, limit: limit) { return }
        guard queued < maxQueued else { throw .queueFull }
        do {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let id = state.withLock { state in
                    state.nextWaiter += 1
                    state.waiters.append(
                        Waiter(id: state.nextWaiter, function: function, limit: limit, continuation: continuation))
                    return state.nextWaiter
                }
                let timer = GatewayTimer.schedule(after: queueTimeout) { [self] in giveUp(waiter: id) }
                let stillWaiting = state.withLock { state in
                    guard let index = state.waiters.firstIndex(where: { $0.id == id }) else { return false }
                    state.waiters[index].timer = timer
                    return true
                }
                if !stillWaiting { timer.cancel() }
                // A slot may have come free between the check above and the append.
                resumeWaiters()
            }
        } catch {
            throw .waitedTooLong
        }
    }

    /// Admits the call if it may start now, without queueing; false otherwise.
    func tryAdmit(_ function: String, limit: Int?) -> Bool {
        state.withLock { state in
            guard state.hasRoom(function, limit: limit, maxRunning: maxRunning),
                !state.waiters.contains(where: { $0.function == function })
            else { return false }
            state.admit(function)
            return true
        }
    }

    /// Ends an admission and hands its slot to the first waiter that fits.
    func release(_ function: String) {
        state.withLock { state in
            state.running -= 1
            state.runningByFunction[function, default: 1] -= 1
            if state.runningByFunction[function] == 0 { state.runningByFunction[function] = nil }
        }
        resumeWaiters()
    }

    private func resumeWaiters() {
        let ready = state.withLock { state in
            var ready: [Waiter] = []
            var index = 0
            while index < state.waiters.count, state.running < maxRunning {
                let waiter = state.waiters[index]
                let earlierOfSameFunction = state.waiters[..<index].contains { $0.function == waiter.function }
                if !earlierOfSameFunction, state.hasRoom(waiter.function, limit: waiter.limit, maxRunning: maxRunning) {
                    state.admit(waiter.function)
                    ready.append(state.waiters.remove(at: index))
                } else {
                    index += 1
                }
            }
            return ready
        }
        for waiter in ready {
            waiter.timer?.cancel()
            waiter.continuation.resume()
        }
    }

    private func giveUp(waiter id: Int) {
        let continuation = state.withLock { state in
            state.waiters.firstIndex { $0.id == id }.map { state.waiters.remove(at: $0).continuation }
        }
        continuation?.resume(throwing: Refusal.waitedTooLong)
    }
}
