import Foundation
import Testing

@testable import PrefabGateway

#if canImport(Glibc)
    import Glibc
#endif

@Suite(.timeLimit(.minutes(1))) struct ChildInputTests {
    /// A line half-written into a full pipe when stdin is closed, and a message sent after the
    /// close: neither may reach what the freed descriptor number refers to next (hole 7: a close
    /// beside a write on another thread sent the rest of a line into an unrelated socket or pipe).
    @Test func nothingReachesADescriptorNumberReusedAfterTheClose() async throws {
        // A number near the limit, so that no other test's socket takes it when it is freed:
        // descriptors are handed out lowest first.
        var limit = rlimit()
        _ = getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        let number = Int32(clamping: limit.rlim_cur) - 64
        try #require(fcntl(number, F_GETFD) == -1, "descriptor \(number) is free")
        var stdin: [Int32] = [0, 0]
        #expect(pipe(&stdin) == 0)
        #expect(dup2(stdin[1], number) == number)
        _ = Glibc.close(stdin[1])
        let input = ChildInput(descriptor: number, capacity: 256)
        // Larger than the pipe (64 KiB): most of it waits for the child, which does not read yet.
        input.send(call: [UInt8](repeating: UInt8(ascii: "a"), count: 512 * 1024))
        #expect(await eventually { unreadBytes(stdin[0]) >= 4096 })
        input.close()
        #expect(await eventually { fcntl(number, F_GETFD) == -1 }, "stdin is closed")

        // The number now names a socket, as it would after a new connection took it.
        var sockets: [Int32] = [0, 0]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &sockets) == 0)
        #expect(dup2(sockets[0], number) == number)
        _ = Glibc.close(sockets[0])
        _ = input.send(message: Array("late message\n".utf8))
        // The child reads what it had: a writer still holding the rest of the line would go on.
        _ = fcntl(stdin[0], F_SETFL, fcntl(stdin[0], F_GETFL) | O_NONBLOCK)
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while read(stdin[0], &buffer, buffer.count) > 0 {}
        try await Task.sleep(for: .milliseconds(300))

        #expect(unreadBytes(sockets[1]) == 0, "bytes meant for the closed stdin reached the socket")
        for descriptor in [stdin[0], number, sockets[1]] { _ = Glibc.close(descriptor) }
    }

    private func unreadBytes(_ descriptor: Int32) -> Int32 {
        var count: Int32 = 0
        _ = ioctl(descriptor, UInt(FIONREAD), &count)
        return count
    }

    private func eventually(_ condition: () -> Bool) async -> Bool {
        for _ in 0..<200 {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return condition()
    }
}
