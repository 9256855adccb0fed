import Foundation
import HTTPTypes
import PrefabGateway
import PrefabKit
import Synchronization
import Testing

/// A function's context is `Sendable`: a function may yield from threads of its own. Every event
/// must arrive once, numbered in order, and nothing may follow the terminal event.
@Suite struct ConcurrentYieldTests {
    static let threads = 8
    static let eventsPerThread = 2000

    /// Before the fix the event log's sequence counter and encoding buffer belonged to "the"
    /// producer: threads yielding at once corrupted both (duplicate or skipped numbers, mixed
    /// bytes, or a crash).
    @Test func eventsYieldedFromManyThreadsAtOnceArriveOnceEachNumberedInOrder() async throws {
        let failures = Mutex<[String]>([])
        let parallel = TestPrefab.streaming("parallel") { _, context in
            let group = DispatchGroup()
            for thread in 0..<Self.threads {
                group.enter()
                Thread.detachNewThread {
                    defer { group.leave() }
                    do {
                        for index in 0..<Self.eventsPerThread { try context.yield(.content("t\(thread)-\(index)")) }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
            group.wait()
        }
        try await LiveGateway.run([parallel]) { gateway in
            let reply = try await gateway.invoke("parallel")
            #expect(reply.status == .ok)
            var parser = SSEParser()
            let messages = parser.feed(reply.body.readableBytesView)
            let total = Self.threads * Self.eventsPerThread
            #expect(messages.map(\.lastEventId) == (1...total + 1).map(String.init))
            let events = messages.compactMap(\.prefabEvent)
            #expect(events.last?.type == "done")
            let texts = events.filter { $0.type == "content" }.compactMap { $0.data?.stringValue }
            #expect(texts.count == total)
            #expect(Set(texts).count == total)
            // Each thread's own events keep their order.
            for thread in 0..<Self.threads {
                let own = texts.filter { $0.hasPrefix("t\(thread)-") }
                #expect(own == (0..<Self.eventsPerThread).map { "t\(thread)-\($0)" })
            }
            #expect(failures.withLock { $0 } == [])
        }
    }

    /// A thread the function leaves running keeps yielding after the function returned: those
    /// events are refused (`STREAM_ENDED`), and neither the stream nor a reader that resumes
    /// later sees anything after the terminal event. Before the fix they were appended after it.
    @Test func eventsYieldedAfterTheFunctionReturnedNeverFollowTheTerminalEvent() async throws {
        let probe = Probe()
        let leaving = TestPrefab.streaming("leaving") { _, context in
            try context.yield(.start())
            Thread.detachNewThread {
                for _ in 0..<500 {
                    Thread.sleep(forTimeInterval: 0.002)
                    do {
                        try context.yield(.content("late"))
                    } catch {
                        probe.stop(with: (error as? PrefabError)?.code.rawValue ?? "\(error)")
                        return
                    }
                }
            }
        }
        try await LiveGateway.run([leaving]) { gateway in
            let reply = try await gateway.invoke("leaving")
            let id = try #require(reply.headers[HTTPField.Name("X-Invocation-Id")!])
            #expect(reply.events.last?.type == "done")
            #expect(await Probe.eventually(within: .seconds(3)) { probe.stoppedWith != nil })
            #expect(probe.stoppedWith == "STREAM_ENDED")
            let resumed = try await gateway.request(.get, "/invocations/\(id)/events?after=0")
            let events = resumed.events
            #expect(events.last?.type == "done")
            #expect(events.count { $0.type == "done" || $0.type == "error" } == 1)
        }
    }
}
