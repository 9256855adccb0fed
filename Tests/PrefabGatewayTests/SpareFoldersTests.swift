import Foundation
import PrefabKit
import Testing

@testable import PrefabGateway

#if canImport(Glibc)
    import Glibc
#endif

/// A call that leaves its output folder empty gives it to the next call (one inode, renamed)
/// instead of leaving it for the sweep: no folder is made per call.
@Suite(.timeLimit(.minutes(1))) struct SpareFoldersTests {
    /// Asks for its output folder, writes `file` into it when given, and yields the folder's inode.
    static let folder = TestPrefab.streaming(
        "folder", parameters: [ParameterManifest(name: "file", type: .string, defaultValue: "")]
    ) { inputs, context in
        let directory = try context.outputDirectory
        if let name = inputs["file"]?.stringValue, !name.isEmpty {
            try "x".write(to: directory.appendingPathComponent(name), atomically: true, encoding: .utf8)
        }
        var status = stat()
        guard stat(directory.path, &status) == 0 else { throw PrefabError(.internalError, "no folder") }
        try context.yield(.content(String(status.st_ino)))
    }

    static func call(_ gateway: LiveGateway, file: String? = nil) async throws -> (id: String, inode: Int?) {
        let inputs = file.map { #"{"inputs": {"file": "\#($0)"}}"# } ?? #"{"inputs": {}}"#
        let reply = try await gateway.invoke("folder", inputs)
        let id = try #require(reply.headers[.init("X-Invocation-Id")!])
        return (id, reply.events.first { $0.type == "content" }?.data?.stringValue.flatMap { Int($0) })
    }

    @Test func anEmptyFolderIsTheNextCallsAndAFolderWithFilesStays() async throws {
        try await LiveGateway.run([Self.folder]) { gateway in
            let outputs = gateway.dataDirectory.appendingPathComponent("outputs")
            let first = try await Self.call(gateway)
            // Left empty: no folder of its id stays; it became a spare, named for a call to come.
            #expect(!FileManager.default.fileExists(atPath: outputs.appendingPathComponent(first.id).path))
            let spares = try FileManager.default.contentsOfDirectory(atPath: outputs.path)
            #expect(spares.count == 1 && spares.allSatisfy { InvocationID.isValid($0) })
            let second = try await Self.call(gateway, file: "kept.txt")
            #expect(second.inode != nil && second.inode == first.inode)
            // With a file: its folder stays and serves it.
            #expect(FileManager.default.fileExists(atPath: outputs.appendingPathComponent(second.id).path))
            #expect(try await gateway.request(.get, "/files/\(second.id)/kept.txt").text == "x")
            // No spare now: the next folder is a new one, and a spare after its call.
            let third = try await Self.call(gateway)
            #expect(third.inode != second.inode)
            let names = try FileManager.default.contentsOfDirectory(atPath: outputs.path)
            #expect(names.count == 2 && names.contains(second.id))
            #expect(names.allSatisfy { InvocationID.isValid($0) && $0 != first.id && $0 != third.id })
        }
    }

    /// A Python call's folder is made before it runs: the call takes a spare's id as its own, so
    /// its folder is there without a rename, and its own becomes the next spare.
    @Test func aPythonCallTakesTheIdOfASpareFolder() async throws {
        let code = """
            import os
            def folder_py():
                path = os.environ["PREFAB_OUTPUT_DIR"]
                yield {"type": "content", "data": {"name": os.path.basename(path), "inode": os.stat(path).st_ino}}
            """
        try await ProcessRuntimeTests.run(ProcessRuntimeTests.python(.worker, "folder_py", code)) { gateway in
            let outputs = gateway.dataDirectory.appendingPathComponent("outputs")
            func call() async throws -> (id: String, name: String?, inode: Int?) {
                let reply = try await gateway.invoke("folder_py")
                let id = try #require(reply.headers[.init("X-Invocation-Id")!])
                let data = reply.events.first { $0.type == "content" }?.data
                return (id, data?["name"]?.stringValue, data?["inode"]?.intValue)
            }
            let first = try await call()
            #expect(first.name == first.id)
            let spares = try FileManager.default.contentsOfDirectory(atPath: outputs.path)
            #expect(spares.count == 1 && spares.first != first.id)
            let second = try await call()
            #expect([second.id] == spares && second.name == second.id)
            #expect(second.inode != nil && second.inode == first.inode)
        }
    }

    /// An output store in a new temporary folder, with the (empty) folder of an ended call.
    static func storeWithAnEndedCall() throws -> (store: OutputStore, ended: URL) {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("spares-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        let store = OutputStore(root: root)
        let ended = store.directory(for: InvocationID.make())
        try PrefabContext.makeDirectory(ended.path)
        return (store, ended)
    }

    /// The sweep leaves spare folders and the folders of taken ids alone, however old; a taken
    /// id's folder is swept as any other once its call no longer holds it.
    @Test func theSweepLeavesSparesAlone() throws {
        let (store, ended) = try Self.storeWithAnEndedCall()
        defer { try? FileManager.default.removeItem(at: store.root) }
        store.spares.keep(ended.path)
        let later = Date().addingTimeInterval(3600)
        let spare = try #require(try FileManager.default.contentsOfDirectory(atPath: store.root.path).first)
        #expect(store.removeExpired(retention: .seconds(1), now: later) { _ in false } == 0)
        #expect(store.spares.take() == spare)
        #expect(store.removeExpired(retention: .seconds(1), now: later) { _ in false } == 0)
        store.spares.settle(spare)
        #expect(store.removeExpired(retention: .seconds(1), now: later) { _ in false } == 1)
    }

    /// A taken spare is dated at its call's start, as a new folder would be: another gateway
    /// sharing `--data` sweeps folders by age, and would take a running call's for an old one.
    @Test func aTakenSpareIsDatedNow() throws {
        let (store, ended) = try Self.storeWithAnEndedCall()
        defer { try? FileManager.default.removeItem(at: store.root) }
        let dayAgo = Date(timeIntervalSinceNow: -86_400)
        try FileManager.default.setAttributes([.modificationDate: dayAgo], ofItemAtPath: ended.path)
        store.spares.keep(ended.path)
        let id = try #require(store.spares.take())
        try SpareFolders.ensure(store.directoryPath(for: id))
        store.spares.settle(id)
        let attributes = try FileManager.default.attributesOfItem(atPath: store.directory(for: id).path)
        #expect(try #require(attributes[.modificationDate] as? Date) > Date(timeIntervalSinceNow: -60))
        // Another gateway's sweep, with an hour's retention, leaves it.
        #expect(OutputStore(root: store.root).removeExpired(retention: .seconds(3600)) { _ in false } == 0)
    }

    /// However many calls end at once, at most `capacity` folders become spares; the rest stay
    /// where they are, for the sweep.
    @Test func atMostTheCapacityIsKept() throws {
        let (store, first) = try Self.storeWithAnEndedCall()
        defer { try? FileManager.default.removeItem(at: store.root) }
        var ended = [first]
        for _ in 1..<300 {
            ended.append(store.directory(for: InvocationID.make()))
            try PrefabContext.makeDirectory(ended[ended.count - 1].path)
        }
        let folders = ended
        DispatchQueue.concurrentPerform(iterations: folders.count) { index in store.spares.keep(folders[index].path) }
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: store.root.path))
        #expect(names.count == 300)
        #expect(names.subtracting(ended.map(\.lastPathComponent)).count == SpareFolders.capacity)
    }

    /// Spares left by a gateway that has ended are removed; a running one's are kept.
    @Test func sparesOfAnEndedGatewayAreRemoved() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("spares-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        var ended: pid_t = 4_000_000
        while kill(ended, 0) == 0 || errno != ESRCH { ended -= 1 }
        let names = [".spare-\(ended)-1", ".spare-1-1", ".spare-\(getpid())-7", "not-a-spare"]
        for name in names {
            try FileManager.default.createDirectory(
                at: root.appendingPathComponent(name), withIntermediateDirectories: true)
        }
        SpareFolders(root: root).removeLeftovers()
        let left = try FileManager.default.contentsOfDirectory(atPath: root.path).sorted()
        #expect(left == [".spare-\(getpid())-7", ".spare-1-1", "not-a-spare"].sorted())
    }

    /// Whether a call left its folder empty decides whether it is kept or listed: a hidden file, a
    /// name of dots, and the one entry left of many all count; a gone folder (or a file) is unknown.
    @Test func aFolderHoldsEntriesWhenAnyNameButDotAndDotDotIsInIt() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent(
            "has-entries-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: root) }
        #expect(OutputStore.hasEntries(root.path) == false)
        for name in [".hidden", "...", "plain"] {
            let file = root.appendingPathComponent(name)
            #expect(FileManager.default.createFile(atPath: file.path, contents: Data()))
            #expect(OutputStore.hasEntries(root.path) == true, "\(name)")
            try FileManager.default.removeItem(at: file)
            #expect(OutputStore.hasEntries(root.path) == false, "\(name) removed")
        }
        // More entries than one 1 KiB read holds, all but one removed: the one left counts.
        let long = String(repeating: "n", count: 200)
        for index in 0..<40 {
            #expect(
                FileManager.default.createFile(
                    atPath: root.appendingPathComponent("\(long)\(index)").path, contents: Data()))
        }
        for index in 0..<39 { try FileManager.default.removeItem(at: root.appendingPathComponent("\(long)\(index)")) }
        #expect(OutputStore.hasEntries(root.path) == true)
        #expect(OutputStore.hasEntries(root.appendingPathComponent("gone").path) == nil)
        #expect(OutputStore.hasEntries(root.appendingPathComponent("\(long)39").path) == nil)  // a file
    }
}
