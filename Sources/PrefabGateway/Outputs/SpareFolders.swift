import Foundation
import PrefabKit
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Empty output folders kept for the next calls. A process prefab's call needs its folder before
/// it runs, and most calls leave it empty. Making a folder allocates an inode, and after many
/// deletions (the retention sweep's, or a folder per call) ext4 searches past every recently
/// deleted one: `mkdir` took half the gateway's time at 64 connections of `echo_py`. An empty
/// folder is instead renamed to `.spare-<pid>-<n>` when its call ends and renamed to the next
/// call's id, which reuses its inode. A late write by its old path finds nothing there, as if the
/// folder had been removed.
final class SpareFolders: Sendable {
    private let root: String
    private let prefix: String
    private let state = Mutex<(names: [String], made: Int)>(([], 0))

    /// The most kept; past it an empty folder stays where it is, for the sweep.
    static let capacity = 256

    init(root: URL) {
        self.root = root.path
        self.prefix = ".spare-\(getpid())-"
    }

    /// Makes the folder at `url`, from a spare one when there is one.
    func make(_ url: URL) throws {
        while let spare = state.withLock({ $0.names.popLast() }) {
            if rename(root + "/" + spare, url.path) == 0 { return }
        }
        try PrefabContext.makeDirectory(url)
    }

    /// Keeps `directory`, which its call left empty, for a later call: renamed to a spare, or left
    /// where it is (for the sweep) when there are enough.
    func keep(_ directory: URL) {
        let name: String? = state.withLock { state in
            guard state.names.count < Self.capacity else { return nil }
            state.made += 1
            return prefix + String(state.made)
        }
        guard let name, rename(directory.path, root + "/" + name) == 0 else { return }
        state.withLock { $0.names.append(name) }
    }

    /// Removes the spare folders earlier processes left (a running gateway's own are not
    /// touched: their names carry its process id).
    func removeLeftovers() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
        for name in names where name.hasPrefix(".spare-") && !name.hasPrefix(prefix) {
            let owner = name.dropFirst(".spare-".count).prefix { $0 != "-" }
            if let pid = pid_t(owner), kill(pid, 0) == 0 { continue }  // another gateway's, alive
            _ = rmdir(root + "/" + name)
        }
    }
}
