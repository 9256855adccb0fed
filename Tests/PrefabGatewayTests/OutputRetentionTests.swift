import Foundation
import Testing

@testable import PrefabGateway

/// When the sweeper removes an output folder: a retention period after its call ended, never
/// while the call runs, whenever the folder was made.
@Suite(.timeLimit(.minutes(1))) struct OutputRetentionTests {
    static func withStore(_ test: (OutputStore, URL) throws -> Void) throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("outputs-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        try FileManager.default.createDirectory(at: root, withIntermediateDirectories: true)
        try test(OutputStore(root: root), root)
    }

    /// A folder for a new invocation, last changed `age` ago.
    static func folder(in store: OutputStore, age: TimeInterval) throws -> (id: String, url: URL) {
        let id = InvocationID.make()
        let url = store.directory(for: id)
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        try FileManager.default.setAttributes([.modificationDate: Date() - age], ofItemAtPath: url.path)
        return (id, url)
    }

    @Test func aRunningCallsFolderIsNeverRemoved() throws {
        try Self.withStore { store, _ in
            let running = try Self.folder(in: store, age: 3600)
            let ended = try Self.folder(in: store, age: 3600)
            let removed = store.removeExpired(retention: .seconds(60)) { $0 == running.id }
            #expect(removed == 1)
            #expect(FileManager.default.fileExists(atPath: running.url.path))
            #expect(!FileManager.default.fileExists(atPath: ended.url.path))
        }
    }

    @Test func retentionCountsFromTheCallsEnd() throws {
        try Self.withStore { store, _ in
            // Made an hour ago by a call that has just ended.
            let folder = try Self.folder(in: store, age: 3600)
            store.markEnded(folder.url.path)
            #expect(store.removeExpired(retention: .seconds(60)) { _ in false } == 0)
            #expect(store.removeExpired(retention: .seconds(60), now: Date() + 59) { _ in false } == 0)
            #expect(store.removeExpired(retention: .seconds(60), now: Date() + 61) { _ in false } == 1)
            #expect(!FileManager.default.fileExists(atPath: folder.url.path))
        }
    }

    @Test func foldersThatAreNotInvocationsAreLeftAlone() throws {
        try Self.withStore { store, root in
            let other = root.appendingPathComponent("keep-me")
            try FileManager.default.createDirectory(at: other, withIntermediateDirectories: true)
            try FileManager.default.setAttributes([.modificationDate: Date() - 3600], ofItemAtPath: other.path)
            #expect(store.removeExpired(retention: .seconds(1)) { _ in false } == 0)
            #expect(FileManager.default.fileExists(atPath: other.path))
        }
    }
}
