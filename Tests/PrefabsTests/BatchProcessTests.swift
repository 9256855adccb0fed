import PrefabKit
import Testing

@testable import Prefabs

@Suite("batch_process prefab")
struct BatchProcessTests {
    @Test("three strings: start, a progress per item at 33/66/100, then done with the upper-cased results")
    func threeItems() throws {
        let events = try collect(BatchProcess.batchProcess, inputs: ["items": ["a", "b", "c"], "delay_ms": 0])
        #expect(
            events == [
                PrefabEvent(type: "start", fields: ["data": ["total": 3]]),
                PrefabEvent(
                    type: "progress",
                    fields: [
                        "data": ["current": 1, "total": 3, "percentage": 33, "message": #"processed "a""#, "item": "a"]
                    ]
                ),
                PrefabEvent(
                    type: "progress",
                    fields: [
                        "data": ["current": 2, "total": 3, "percentage": 66, "message": #"processed "b""#, "item": "b"]
                    ]
                ),
                PrefabEvent(
                    type: "progress",
                    fields: [
                        "data": [
                            "current": 3, "total": 3, "percentage": 100, "message": #"processed "c""#, "item": "c",
                        ]
                    ]
                ),
                PrefabEvent(type: "done", fields: ["data": ["total": 3, "results": ["A", "B", "C"]]]),
            ]
        )
    }

    @Test("non-string items are passed through unchanged")
    func nonStringItems() throws {
        let events = try collect(
            BatchProcess.batchProcess,
            inputs: ["items": [1, ["k": "v"], "x", nil], "delay_ms": 0]
        )
        #expect(events.map(\.type) == ["start", "progress", "progress", "progress", "progress", "done"])
        #expect(events[1].data?["message"] == "processed 1")
        #expect(events[2].data?["message"] == #"processed {"k":"v"}"#)
        #expect(events[4].data?["message"] == "processed null")
        #expect(events[4].data?["percentage"] == 100)
        #expect(events.last?.data == ["total": 4, "results": [1, ["k": "v"], "X", nil]])
    }

    @Test("no items: start and done with an empty result")
    func noItems() throws {
        let events = try collect(BatchProcess.batchProcess, inputs: ["items": [], "delay_ms": 0])
        #expect(events == [.start(["total": 0]), .done(["total": 0, "results": []])])
    }

    @Test("missing items is an INVALID_INPUTS error event")
    func missingItems() throws {
        let events = try collect(BatchProcess.batchProcess, inputs: ["delay_ms": 0])
        #expect(events == [.error("input 'items' is missing", code: "INVALID_INPUTS")])
    }

    @Test("the manifest requires items and defaults delay_ms to 300")
    func manifestDefaults() throws {
        let function = try #require(try exampleManifest("batch_process").functions.first)
        #expect(function.streaming)
        let inputs = try function.validate(["items": ["a"]]).get()
        #expect(inputs == ["items": ["a"], "delay_ms": 300])
    }
}
