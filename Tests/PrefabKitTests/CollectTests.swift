import Foundation
import PrefabKit
import Synchronization
import Testing

/// Records what happens inside a function, for checking after it ran.
private final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func record(_ entry: String) { storage.withLock { $0.append(entry) } }
    var entries: [String] { storage.withLock { $0 } }
}

/// Yields `event` and records the code of the error it throws, or "no error".
private func yieldRecording(_ event: PrefabEvent, _ context: PrefabContext, _ recorder: Recorder) {
    do {
        try context.yield(event)
        recorder.record("no error")
    } catch let error as PrefabError {
        recorder.record(error.code.rawValue)
    } catch {
        recorder.record("other: \(error)")
    }
}

private struct PlainError: Error, CustomStringConvertible {
    var description: String { "the disk is full" }
}

/// A fresh directory path under the temporary directory, not yet created.
private func scratchDirectory() -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("collect-tests-\(UUID().uuidString)")
}

@Suite("collect: terminal events")
struct CollectTerminalTests {
    @Test("a function that returns without a terminal event gets exactly one done at the end")
    func implicitDone() throws {
        let events = try collect { _, context in
            try context.yield(.start())
            try context.yield(.content("a"))
        }
        #expect(events == [.start(), .content("a"), .done()])
    }

    @Test("a function that yields nothing still ends with done")
    func emptyFunction() throws {
        #expect(try collect { _, _ in } == [.done()])
    }

    @Test("the function's own done is sent last, once")
    func explicitDone() throws {
        let events = try collect { _, context in
            try context.yield(.start())
            try context.yield(.done(["answer": 42]))
        }
        #expect(events == [.start(), .done(["answer": 42])])
    }

    @Test("a thrown PrefabError becomes an error event with its message and code")
    func thrownPrefabError() throws {
        let events = try collect { _, context in
            try context.yield(.progress(current: 1, total: 2))
            throw PrefabError("QUOTA_EXCEEDED", "no quota left", details: ["q"])
        }
        #expect(
            events == [
                .progress(current: 1, total: 2),
                PrefabEvent(
                    type: "error",
                    fields: ["data": "no quota left", "error_code": "QUOTA_EXCEEDED", "details": ["q"]]
                ),
            ]
        )
    }

    @Test("a plain Swift error becomes UNEXPECTED_ERROR with its description")
    func plainError() throws {
        let events = try collect { _, _ in throw PlainError() }
        #expect(events == [.error("the disk is full", code: "UNEXPECTED_ERROR")])
    }

    @Test("yielding after done throws STREAM_ENDED and the events end with that one done")
    func yieldAfterDone() throws {
        let recorder = Recorder()
        let events = try collect { _, context in
            try context.yield(.start())
            try context.yield(.done("first"))
            yieldRecording(.content("late"), context, recorder)
            yieldRecording(.progress(current: 1, total: 1), context, recorder)
        }
        #expect(recorder.entries == ["STREAM_ENDED", "STREAM_ENDED"])
        #expect(events == [.start(), .done("first")])
    }

    @Test("a function that lets STREAM_ENDED propagate still ends with its done")
    func streamEndedPropagates() throws {
        let events = try collect { _, context in
            try context.yield(.done("first"))
            try context.yield(.content("late"))
        }
        #expect(events == [.done("first")])
    }

    @Test("a second terminal event is refused", arguments: [PrefabEvent.done("second"), .error("late", code: "LATE")])
    func secondTerminal(second: PrefabEvent) throws {
        let recorder = Recorder()
        let events = try collect { _, context in
            try context.yield(.done("first"))
            yieldRecording(second, context, recorder)
        }
        #expect(recorder.entries == ["STREAM_ENDED"])
        #expect(events == [.done("first")])
    }

    @Test("an error yielded as an event is the terminal event, even if the function then returns")
    func yieldedError() throws {
        let events = try collect { _, context in
            try context.yield(.error("bad row", code: "BAD_ROW"))
        }
        #expect(events == [.error("bad row", code: "BAD_ROW")])
    }

    @Test("the terminal event wins over an error thrown after it")
    func terminalBeatsLaterThrow() throws {
        let events = try collect { _, context in
            try context.yield(.done("ok"))
            throw PlainError()
        }
        #expect(events == [.done("ok")])
    }

    @Test("the terminal event is held until the function returns: the sink never sees it")
    func terminalHeld() {
        let recorder = Recorder()
        let seen = Recorder()
        let context = PrefabContext(invocationId: "inv", outputDirectory: scratchDirectory()) { event in
            seen.record(event.jsonString)
        }
        let function: StreamingFunction = { _, context in
            try context.yield(.start())
            try context.yield(.done("d"))
            recorder.record("after done")
            yieldRecording(.content("late"), context, recorder)
        }
        let terminal = context.run(function, inputs: [:])
        #expect(terminal == .done("d"))
        #expect(seen.entries == [PrefabEvent.start().jsonString])
        #expect(recorder.entries == ["after done", "STREAM_ENDED"])
    }

    @Test("a sink that throws stops the function with that error")
    func throwingSink() {
        let context = PrefabContext(invocationId: "inv", outputDirectory: scratchDirectory()) { event in
            if event.type == "content" { throw PrefabError("SINK_FAILED", "write failed") }
        }
        let recorder = Recorder()
        let function: StreamingFunction = { _, context in
            try context.yield(.start())
            try context.yield(.content("x"))
            recorder.record("kept going")
        }
        let terminal = context.run(function, inputs: [:])
        #expect(terminal == .error("write failed", code: "SINK_FAILED"))
        #expect(recorder.entries.isEmpty)
    }

    @Test("the invocation id and inputs reach the function")
    func invocationIdAndInputs() throws {
        let events = try collect(
            { inputs, context in
                try context.yield(.content(context.invocationId))
                try context.yield(.content(inputs.string("word")))
            },
            inputs: ["word": "hi"],
            invocationId: "inv-42"
        )
        #expect(events == [.content("inv-42"), .content("hi"), .done()])
    }
}

@Suite("collect: cancellation", .timeLimit(.minutes(1)))
struct CollectCancellationTests {
    @Test("after cancel() the next yield throws CANCELLED and the result ends with error CANCELLED")
    func cancel() throws {
        let recorder = Recorder()
        let events = try collect { _, context in
            try context.yield(.start())
            context.cancel()
            recorder.record("cancelled: \(context.isCancelled)")
            yieldRecording(.content("after"), context, recorder)
            try context.yield(.content("after again"))
        }
        #expect(recorder.entries == ["cancelled: true", "CANCELLED"])
        #expect(events == [.start(), .error("the invocation was cancelled", code: "CANCELLED")])
    }

    @Test("a cancelled function that swallows the error and returns still ends with CANCELLED")
    func swallowed() throws {
        let events = try collect { _, context in
            context.cancel()
            try? context.yield(.content("x"))
        }
        #expect(events == [.error("the invocation was cancelled", code: "CANCELLED")])
    }

    @Test("cancellation wins over another error thrown afterwards")
    func cancelBeatsThrow() throws {
        let events = try collect { _, context in
            context.cancel()
            throw PlainError()
        }
        #expect(events.map(\.errorCode) == ["CANCELLED"])
    }

    @Test("a terminal event yielded after cancel() is refused")
    func terminalAfterCancel() throws {
        let recorder = Recorder()
        let events = try collect { _, context in
            context.cancel()
            yieldRecording(.done(), context, recorder)
        }
        #expect(recorder.entries == ["CANCELLED"])
        #expect(events.map(\.type) == ["error"])
        #expect(events.last?.errorCode == "CANCELLED")
    }
}

@Suite("collect: output files")
struct CollectFilesTests {
    @Test("files written into the output directory are listed right before the terminal event")
    func filesEvent() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(
            { _, context in
                try context.yield(.start())
                let folder = try context.outputDirectory
                try "hello".write(to: folder.appendingPathComponent("b.txt"), atomically: true, encoding: .utf8)
                try "x,y\n1,2\n".write(to: folder.appendingPathComponent("a.csv"), atomically: true, encoding: .utf8)
                try context.yield(.done("written"))
            },
            outputDirectory: directory
        )
        try #require(events.count == 3)
        #expect(events[0] == .start())
        #expect(events[2] == .done("written"))
        let files = events[1]
        #expect(files.type == "files")
        let entries = try #require(files.data?.arrayValue)
        try #require(entries.count == 2)
        #expect(entries.map { $0["name"] } == ["a.csv", "b.txt"])
        #expect(entries.map { $0["size"] } == [8, 5])
        #expect(entries.map { $0["content_type"] } == ["text/csv; charset=utf-8", "text/plain; charset=utf-8"])
        for entry in entries {
            let name = try #require(entry["name"]?.stringValue)
            let url = try #require(entry["url"]?.stringValue)
            #expect(url.hasPrefix("file:///"))
            #expect(
                URL(string: url)?.standardizedFileURL.path
                    == directory.appendingPathComponent(name).standardizedFileURL.path
            )
            #expect(entry.objectValue?.keys.sorted() == ["content_type", "name", "size", "url"])
        }
    }

    @Test("files in subfolders are listed with their relative path, and an error still comes last")
    func subfolderAndError() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect(
            { _, context in
                let folder = try context.outputDirectory.appendingPathComponent("sub")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                try Data("{}".utf8).write(to: folder.appendingPathComponent("c.json"))
                throw PrefabError("HALF_DONE", "stopped")
            },
            outputDirectory: directory
        )
        #expect(events.map(\.type) == ["files", "error"])
        #expect(events.first?.data?.arrayValue?.first?["name"] == "sub/c.json")
        #expect(events.first?.data?.arrayValue?.first?["content_type"] == "application/json")
        #expect(events.first?.data?.arrayValue?.first?["size"] == 2)
        #expect(events.last == .error("stopped", code: "HALF_DONE"))
    }

    @Test("a function that never touches outputDirectory creates no directory")
    func noDirectory() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect({ _, context in try context.yield(.content("x")) }, outputDirectory: directory)
        #expect(events == [.content("x"), .done()])
        #expect(!FileManager.default.fileExists(atPath: directory.path))
    }

    @Test("asking for the directory creates it; an empty one sends no files event")
    func emptyDirectory() throws {
        let directory = scratchDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let events = try collect({ _, context in _ = try context.outputDirectory }, outputDirectory: directory)
        #expect(events == [.done()])
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: directory.path, isDirectory: &isDirectory))
        #expect(isDirectory.boolValue)
    }
}

@Suite("call: result functions")
struct CallTests {
    @Test("call returns the function's value and drops yielded events")
    func value() throws {
        let result = try call(
            { inputs, context in
                try context.yield(.content("ignored"))
                return ["doubled": .int(try inputs.int("n") * 2)]
            },
            inputs: ["n": 21]
        )
        #expect(result == ["doubled": 42])
    }

    @Test("call rethrows a PrefabError unchanged")
    func thrownPrefabError() {
        let expected = PrefabError("NOT_FOUND", "no such city", details: ["atlantis"])
        #expect(throws: expected) {
            try call { _, _ in throw expected }
        }
    }

    @Test("call turns a plain error into UNEXPECTED_ERROR")
    func plainError() {
        #expect(throws: PrefabError(.unexpectedError, "the disk is full")) {
            try call { _, _ in throw PlainError() }
        }
    }

    @Test("a cancelled result function fails with CANCELLED")
    func cancelled() {
        #expect(throws: PrefabError.cancelled) {
            try call { _, context in
                context.cancel()
                throw PlainError()
            }
        }
    }
}

/// One typed read of an input: the value it gives, or the message of the error it throws.
struct AccessorCase: Sendable, CustomTestStringConvertible {
    var label: String
    var read: @Sendable (PrefabInputs) throws -> JSONValue
    var inputs: PrefabInputs
    var expected: Result<JSONValue, PrefabError>

    var testDescription: String { label }

    static func gives(
        _ label: String,
        _ inputs: PrefabInputs,
        _ expected: JSONValue,
        _ read: @escaping @Sendable (PrefabInputs) throws -> JSONValue
    ) -> AccessorCase {
        AccessorCase(label: label, read: read, inputs: inputs, expected: .success(expected))
    }

    static func fails(
        _ label: String,
        _ inputs: PrefabInputs,
        _ message: String,
        _ read: @escaping @Sendable (PrefabInputs) throws -> JSONValue
    ) -> AccessorCase {
        AccessorCase(label: label, read: read, inputs: inputs, expected: .failure(PrefabError(.invalidInputs, message)))
    }
}

@Suite("PrefabInputs typed accessors")
struct PrefabInputsTests {
    static let cases: [AccessorCase] = [
        .gives("string", ["s": "text"], "text") { .string(try $0.string("s")) },
        .fails("string from an integer", ["s": 1], "input 's' must be string, got integer") {
            .string(try $0.string("s"))
        },
        .fails("string missing", [:], "input 's' is missing") { .string(try $0.string("s")) },
        .fails("string null", ["s": nil], "input 's' is missing") { .string(try $0.string("s")) },
        .gives("int", ["n": 3], 3) { .int(try $0.int("n")) },
        .gives("int from an integral double", ["n": 3.0], 3) { .int(try $0.int("n")) },
        .fails("int from a fraction", ["n": 3.5], "input 'n' must be integer, got number") { .int(try $0.int("n")) },
        .fails("int from a string", ["n": "3"], "input 'n' must be integer, got string") { .int(try $0.int("n")) },
        .gives("double", ["x": 2.5], 2.5) { .double(try $0.double("x")) },
        .gives("double from an integer", ["x": 2], 2.0) { .double(try $0.double("x")) },
        .fails("double from a bool", ["x": true], "input 'x' must be number, got boolean") {
            .double(try $0.double("x"))
        },
        .gives("bool", ["b": false], false) { .bool(try $0.bool("b")) },
        .fails("bool from an integer", ["b": 1], "input 'b' must be boolean, got integer") { .bool(try $0.bool("b")) },
        .gives("array", ["a": [1, "x"]], [1, "x"]) { .array(try $0.array("a")) },
        .fails("array from an object", ["a": ["k": 1]], "input 'a' must be array, got object") {
            .array(try $0.array("a"))
        },
        .gives("object", ["o": ["k": 1]], ["k": 1]) { .object(try $0.object("o")) },
        .fails("object from an array", ["o": [1]], "input 'o' must be object, got array") {
            .object(try $0.object("o"))
        },
        .gives("strings", ["tags": ["a", "b"]], ["a", "b"]) { .array(try $0.strings("tags").map(JSONValue.string)) },
        .gives("strings, empty", ["tags": []], []) { .array(try $0.strings("tags").map(JSONValue.string)) },
        .fails("strings with a number", ["tags": ["a", 1]], "input 'tags[1]' must be a string, got integer") {
            .array(try $0.strings("tags").map(JSONValue.string))
        },
        .fails("strings from a string", ["tags": "a"], "input 'tags' must be array, got string") {
            .array(try $0.strings("tags").map(JSONValue.string))
        },
    ]

    @Test(arguments: cases)
    func accessor(_ accessorCase: AccessorCase) throws {
        switch accessorCase.expected {
        case .success(let value):
            #expect(try accessorCase.read(accessorCase.inputs) == value)
        case .failure(let error):
            #expect(throws: error) {
                try accessorCase.read(accessorCase.inputs)
            }
        }
    }

    @Test("reading an integral double as int leaves the inputs unchanged")
    func intIsExact() throws {
        let inputs: PrefabInputs = ["n": 3.0]
        let value: Int = try inputs.int("n")
        #expect(value == 3)
        #expect(inputs.jsonValue == ["n": 3.0])
    }
}
