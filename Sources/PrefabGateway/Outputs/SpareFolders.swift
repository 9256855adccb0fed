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
/// folder is instead renamed when its call ends, which keeps its inode, to a new invocation id:
/// a process call takes that id as its own and finds its folder made (`take`); a Swift function
/// that asks for its folder gets one renamed to its id (`make`). One rename a process call, where
/// a spare name in between took two. A late write by the old call's path finds nothing there, as
/// if the folder had been removed; the sweep leaves spares and taken ids alone (`holds`).
final class SpareFolders: Sendable {
    private struct State {
        /// Ids whose folder is made and empty, for the next calls.
        var ready: [String] = []
        /// `ready`, and the ids taken by calls not yet counted as running.
        var held: Set<String> = []
        /// Folders being renamed into `ready`: counted against the capacity already.
        var arriving = 0
    }

    private let root: String
    private let state = Mutex(State())

    /// The most kept; past it an empty folder stays where it is, for the sweep.
    static let capacity = 256

    init(root: URL) {
        self.root = root.path
    }

    /// An id whose output folder is already made, for a call that needs its folder before it
    /// runs; nil when there is none. It stays held until `settle`, once the call counts as running.
    func take() -> String? {
        state.withLock { $0.ready.popLast() }
    }

    /// The call of `id` (from `take`) counts as running, or never will: the sweep's rules apply.
    func settle(_ id: String) {
        _ = state.withLock { $0.held.remove(id) }
    }

    /// Whether the folder named `name` is a spare or a taken one the sweep must leave alone.
    func holds(_ name: String) -> Bool {
        state.withLock { $0.held.contains(name) }
    }

    /// Makes the folder at `path`, from a spare one when there is one.
    func make(_ path: String) throws {
        while let spare = state.withLock({ state -> String? in
            guard let spare = state.ready.popLast() else { return nil }
            state.held.remove(spare)
            return spare
        }) {
            if rename(root + "/" + spare, path) == 0 {
                Self.markStarted(path)
                return
            }
        }
        try PrefabContext.makeDirectory(path)
    }

    /// Makes sure the folder of a taken id is there (made when it became a spare; made again if
    /// something removed it), dated now.
    static func ensure(_ path: String) throws {
        if markStarted(path) { return }
        try PrefabContext.makeDirectory(path)
    }

    /// Dates a reused folder now, as a new one would be: a rename keeps a folder's time, and the
    /// sweep of another gateway sharing `--data` removes folders by age (it does not see this
    /// one's calls running). False when there is no folder at `url`.
    @discardableResult
    private static func markStarted(_ path: String) -> Bool {
        utimensat(AT_FDCWD, path, nil, 0) == 0
    }

    /// Keeps `directory`, which its call left empty, for a later call: renamed to a new id, or
    /// left where it is (for the sweep) when there are enough.
    func keep(_ directory: String) {
        let id = InvocationID.make()
        let room: Bool = state.withLock { state in
            guard state.ready.count + state.arriving < Self.capacity else { return false }
            state.arriving += 1
            state.held.insert(id)  // before the rename: the sweep must not take it for an old folder
            return true
        }
        guard room else { return }
        let renamed = rename(directory, root + "/" + id) == 0
        state.withLock { state in
            state.arriving -= 1
            if renamed { state.ready.append(id) } else { state.held.remove(id) }
        }
    }

    /// Removes the `.spare-<pid>-<n>` folders that earlier versions of the gateway kept, once
    /// their gateway has ended.
    func removeLeftovers() {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: root) else { return }
        for name in names where name.hasPrefix(".spare-") {
            let owner = name.dropFirst(".spare-".count).prefix { $0 != "-" }
            if let pid = pid_t(owner), kill(pid, 0) == 0 { continue }  // another gateway's, alive
            _ = rmdir(root + "/" + name)
        }
    }
}
