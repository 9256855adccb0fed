import Foundation
import Testing

@testable import PrefabGateway

#if canImport(Glibc)
    import Glibc
#endif

/// What the end of a call reads of the gateway's adopted children: a process's state and start
/// time from /proc, and the mark in its environment.
@Suite struct ChildLifeTests {
    @Test func aRunningProcessHasAStateAndAStartTime() throws {
        let status = try #require(ProcessStatus(getpid()))
        #expect([UInt8(ascii: "R"), UInt8(ascii: "S")].contains(status.state))
        // Its start time stays the same (it tells this process from a later one with its pid).
        #expect(ProcessStatus(getpid())?.start == status.start)
        #expect(ProcessStatus(999_999_999) == nil)
    }

    /// An ended child not yet reaped reads as a zombie; once reaped, as gone.
    @Test func anEndedChildIsAZombieUntilReaped() async throws {
        var pid: pid_t = 0
        let arguments = ["/bin/true"]
        var argv = arguments.map { strdup($0) } + [nil]
        defer { for argument in argv { free(argument) } }
        #expect(posix_spawn(&pid, "/bin/true", nil, nil, &argv, environ) == 0)
        #expect(await Probe.eventually { ProcessStatus(pid)?.state == UInt8(ascii: "Z") })
        var status: Int32 = 0
        #expect(waitpid(pid, &status, 0) == pid)
        #expect(ProcessStatus(pid) == nil)
    }

    @Test func theMarkIsFoundAmongTheEntriesOfAnEnvironment() {
        func environment(_ entries: [String]) -> Data { Data(entries.joined(separator: "\0").utf8 + [0]) }
        #expect(ChildLife.mark(in: environment(["HOME=/root", "PREFAB_GATEWAY_CHILD=abc", "PATH=/bin"])) == "abc")
        #expect(ChildLife.mark(in: environment(["PREFAB_GATEWAY_CHILD=last"]).dropLast()) == "last")
        // Only a whole name counts: another variable that ends or starts the same is no mark.
        #expect(ChildLife.mark(in: environment(["MY_PREFAB_GATEWAY_CHILD=x", "PREFAB_GATEWAY_CHILDREN=y"])) == nil)
        #expect(ChildLife.mark(in: Data()) == nil)
    }
}
