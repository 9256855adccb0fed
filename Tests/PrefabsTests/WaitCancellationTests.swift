import Foundation
import PrefabKit
import Synchronization
import Testing

@testable import Prefabs

/// The example prefabs wait between events with `context.sleep`, so a timeout or a client that
/// left stops them during the wait. With `Thread.sleep`, a fuzzed `delay_ms` of days held a
/// function thread and an open stream past the gateway's `--timeout`.
@Suite("example prefabs stop while they wait", .timeLimit(.minutes(1)))
struct WaitCancellationTests {
    static let days = 1_000_000_000

    @Test(
        "a cancel ends an eleven-day wait between events at once",
        arguments: [
            ("batch_process", BatchProcess.batchProcess, ["items": ["a"], "delay_ms": .int(days)]),
            ("chat_stream", ChatStream.chatStream, ["prompt": "hi", "delay_ms": .int(days)]),
            ("fail_midway", FailMidway.failMidway, ["steps": 5, "fail_at": 3, "delay_ms": .int(days)]),
        ] as [(String, StreamingFunction, PrefabInputs)]
    )
    func cancelEndsTheWait(name: String, function: @escaping StreamingFunction, inputs: PrefabInputs) {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("wait-\(UUID().uuidString)")
        let context = PrefabContext(invocationId: "wait", outputDirectory: directory) { _ in }
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.05) {
            context.cancel(PrefabError(.timeout, "the call ran past its time limit"))
        }
        // On a thread of its own, so that a function still asleep fails the test instead of hanging it.
        let terminal = Mutex<PrefabEvent?>(nil)
        let ended = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            let event = context.run(function, inputs: inputs)
            terminal.withLock { $0 = event }
            ended.signal()
        }
        #expect(ended.wait(timeout: .now() + 5) == .success, "\(name) still waits after the cancel")
        #expect(terminal.withLock { $0?.errorCode } == "TIMEOUT", "\(name)")
    }
}
