import PrefabKit
import Testing

@testable import Prefabs

@Suite("fail_midway prefab")
struct FailMidwayTests {
    @Test("five steps failing at 3: start, progress 1 and 2, then error STEP_FAILED")
    func defaultsRun() throws {
        let events = try collect(FailMidway.failMidway, inputs: ["steps": 5, "fail_at": 3, "delay_ms": 0])
        #expect(
            events == [
                .start(["steps": 5]),
                PrefabEvent(
                    type: "progress",
                    fields: ["data": ["current": 1, "total": 5, "percentage": 20, "message": "step 1"]]
                ),
                PrefabEvent(
                    type: "progress",
                    fields: ["data": ["current": 2, "total": 5, "percentage": 40, "message": "step 2"]]
                ),
                PrefabEvent(
                    type: "error",
                    fields: ["data": "step 3 of 5 failed on purpose", "error_code": "STEP_FAILED"]
                ),
            ]
        )
    }

    @Test(
        "the number of progress events before the error is fail_at - 1",
        arguments: [(5, 1), (5, 5), (4, 2), (10, 7), (1, 1)]
    )
    func progressCount(steps: Int, failAt: Int) throws {
        let events = try collect(
            FailMidway.failMidway,
            inputs: ["steps": .int(steps), "fail_at": .int(failAt), "delay_ms": 0]
        )
        #expect(events.first == .start(["steps": .int(steps)]))
        #expect(events.dropFirst().dropLast().map(\.type) == Array(repeating: "progress", count: failAt - 1))
        #expect(events.count == failAt + 1)
        #expect(events.last == .error("step \(failAt) of \(steps) failed on purpose", code: "STEP_FAILED"))
    }

    @Test("when fail_at is beyond the last step the run completes with done", arguments: [0, 4, 99])
    func neverFails(failAt: Int) throws {
        let events = try collect(
            FailMidway.failMidway,
            inputs: ["steps": 3, "fail_at": .int(failAt), "delay_ms": 0]
        )
        #expect(events.map(\.type) == ["start", "progress", "progress", "progress", "done"])
        #expect(events[3].data?["percentage"] == 100)
        #expect(events.last == .done(["steps": 3]))
    }

    @Test("the manifest's defaults fail at step 3 of 5")
    func manifestDefaults() throws {
        let function = try #require(try exampleManifest("fail_midway").functions.first)
        #expect(try function.validate([:]).get() == ["steps": 5, "fail_at": 3, "delay_ms": 100])
    }
}
