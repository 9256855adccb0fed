import Foundation
import PrefabGateway
import PrefabKit
import Testing

/// Output files: listed after the last event with absolute URLs, served with the right headers,
/// and nothing outside an invocation's directory can be read.
@Suite(.timeLimit(.minutes(1))) struct OutputFileTests {
    static let writer = TestPrefab.streaming("writer") { _, context in
        let directory = try context.outputDirectory
        try "a,b\n1,2\n".write(to: directory.appendingPathComponent("table.csv"), atomically: true, encoding: .utf8)
        let nested = directory.appendingPathComponent("notes")
        try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
        try "# Notes\n".write(to: nested.appendingPathComponent("read me.md"), atomically: true, encoding: .utf8)
        try FileManager.default.createSymbolicLink(
            at: directory.appendingPathComponent("passwd"),
            withDestinationURL: URL(fileURLWithPath: "/etc/passwd")
        )
        try FileManager.default.createSymbolicLink(
            at: directory.appendingPathComponent("outside"),
            withDestinationURL: URL(fileURLWithPath: "/etc")
        )
        try context.yield(.done(["wrote": 2]))
    }

    @Test func filesAreListedAfterTheLastEventAndServed() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let response = try await gateway.invoke("writer")
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let events = response.events
            #expect(events.map(\.type) == ["files", "done"])
            let files = try #require(events.first?.data?.arrayValue)
            #expect(files.map { $0["name"]?.stringValue } == ["notes/read me.md", "table.csv"])
            #expect(files[1]["url"]?.stringValue == "\(gateway.baseURL)/files/\(id)/table.csv")
            #expect(files[0]["url"]?.stringValue == "\(gateway.baseURL)/files/\(id)/notes/read%20me.md")
            #expect(files[1]["size"] == 8)
            #expect(files[1]["content_type"] == "text/csv; charset=utf-8")

            let csv = try await gateway.request(.get, "/files/\(id)/table.csv")
            #expect(csv.status == .ok)
            #expect(csv.text == "a,b\n1,2\n")
            #expect(csv.headers[.contentType] == "text/csv; charset=utf-8")
            #expect(csv.headers[.contentLength] == "8")
            let notes = try await gateway.request(.get, "/files/\(id)/notes/read%20me.md")
            #expect(notes.text == "# Notes\n")
            #expect(notes.headers[.contentType] == "text/markdown; charset=utf-8")
        }
    }

    @Test func fileURLsUseThePublicBaseURLWhenSet() async throws {
        try await LiveGateway.run([Self.writer], configure: { $0.publicBaseURL = "https://gw.example.com" }) {
            gateway in
            let response = try await gateway.invoke("writer", headers: [.accept: "application/json"])
            let url = response.json?["files"]?.arrayValue?.last?["url"]?.stringValue
            #expect(url?.hasPrefix("https://gw.example.com/files/") == true)
        }
    }

    static let escapes = [
        "../../../../etc/passwd", "..%2F..%2F..%2Fetc%2Fpasswd", "%2e%2e/%2e%2e/etc/passwd", "notes%2Fread%20me.md",
        "passwd", "outside/passwd", "notes", "table.csv%00.txt", "./table.csv", "notes/../table.csv",
    ]

    @Test(arguments: escapes)
    func nothingOutsideTheInvocationDirectoryCanBeRead(_ path: String) async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            let response = try await gateway.invoke("writer")
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let refused = try await gateway.request(.get, "/files/\(id)/\(path)")
            #expect(refused.status == .notFound)
            #expect(refused.errorCode == "FILE_NOT_FOUND")
            #expect(!refused.text.contains("root:"))
        }
    }

    @Test func invocationIdsThatAreNotOursAreRefused() async throws {
        try await LiveGateway.run([Self.writer]) { gateway in
            _ = try await gateway.invoke("writer")
            for id in ["..", "%2e%2e", "0123", String(repeating: "g", count: 32)] {
                let response = try await gateway.request(.get, "/files/\(id)/table.csv")
                #expect(response.status == .notFound, "\(id)")
            }
        }
    }

    @Test func outputFoldersAreRemovedAfterTheRetention() async throws {
        try await LiveGateway.run([Self.writer], configure: { $0.outputRetention = .seconds(1) }) { gateway in
            let response = try await gateway.invoke("writer")
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let folder = gateway.dataDirectory.appendingPathComponent("outputs/\(id)")
            // It was there at the call's end (listed); a look now could come after the sweep.
            #expect(response.events.first?.type == "files")
            #expect(
                await Probe.eventually(within: .seconds(6)) { !FileManager.default.fileExists(atPath: folder.path) })
            #expect(try await gateway.request(.get, "/files/\(id)/table.csv").status == .notFound)
        }
    }

    @Test func aDataPathThroughASymbolicLinkServesItsFiles() async throws {
        // As with /tmp -> /private/tmp, or a --data on a mounted volume reached by a link.
        let real = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-data-\(UUID().uuidString)")
        let link = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-link-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: real, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(at: link, withDestinationURL: real)
        defer {
            try? FileManager.default.removeItem(at: link)
            try? FileManager.default.removeItem(at: real)
        }
        try await LiveGateway.run([Self.writer], configure: { $0.dataDirectory = link.appendingPathComponent("data") })
        {
            gateway in
            let response = try await gateway.invoke("writer")
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let csv = try await gateway.request(.get, "/files/\(id)/table.csv")
            #expect(csv.status == .ok)
            #expect(csv.text == "a,b\n1,2\n")
            #expect(try await gateway.request(.get, "/files/\(id)/notes/read%20me.md").status == .ok)
            // The links the prefab wrote are still refused.
            #expect(try await gateway.request(.get, "/files/\(id)/passwd").status == .notFound)
            #expect(try await gateway.request(.get, "/files/\(id)/outside/passwd").status == .notFound)
        }
    }

    @Test func anInvocationFolderReplacedByALinkIsNotServed() async throws {
        // A process prefab could remove its folder and put a link to elsewhere in its place.
        let replacer = TestPrefab.result("replacer") { _, context in
            let directory = try context.outputDirectory
            try FileManager.default.removeItem(at: directory)
            try FileManager.default.createSymbolicLink(at: directory, withDestinationURL: URL(fileURLWithPath: "/etc"))
            return .null
        }
        try await LiveGateway.run([replacer]) { gateway in
            let response = try await gateway.invoke("replacer")
            let id = try #require(response.headers[.init("X-Invocation-Id")!])
            let refused = try await gateway.request(.get, "/files/\(id)/passwd")
            #expect(refused.status == .notFound)
            #expect(!refused.text.contains("root:"))
        }
    }

    @Test func aRunningCallsFolderOutlivesTheRetention() async throws {
        // Writes its file at once, then runs for three retention periods, through at least two
        // sweeps (one a second), and looks whether its file is still there: the folder was made
        // at the start, but a running call's folder is never removed. The call itself checks, so
        // that a slow test machine cannot turn it into a race with the sweep after the end.
        let slow = TestPrefab.result("slow") { _, context in
            let file = try context.outputDirectory.appendingPathComponent("a.txt")
            try Data("kept".utf8).write(to: file)
            Thread.sleep(forTimeInterval: 3)
            return .bool(FileManager.default.fileExists(atPath: file.path))
        }
        try await LiveGateway.run([slow], configure: { $0.outputRetention = .seconds(1) }) { gateway in
            let response = try await gateway.invoke("slow")
            #expect(response.json?["result"] == true)
            let url = try #require(response.json?["files"]?.arrayValue?.first?["url"]?.stringValue)
            // Gone once the retention has passed after the end (`OutputRetentionTests` checks the
            // date it counts from exactly). Asked with HEAD: a GET whose body is being sent as the
            // sweep removes the file ends short (the file is opened only once the headers are
            // out), which this test is not about.
            let path = String(url.dropFirst(gateway.baseURL.count))
            let ended = ContinuousClock.now
            var gone = false
            while !gone, ContinuousClock.now - ended < .seconds(6) {
                gone = try await gateway.request(.head, path).status == .notFound
                if !gone { try await Task.sleep(for: .milliseconds(100)) }
            }
            #expect(gone)
        }
    }

    @Test func functionsWithoutFilesCreateNoFolder() async throws {
        try await LiveGateway.run([StreamingTests.count]) { gateway in
            _ = try await gateway.invoke("count")
            let outputs = gateway.dataDirectory.appendingPathComponent("outputs")
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: outputs.path)) ?? []
            #expect(entries.isEmpty)
        }
    }
}
