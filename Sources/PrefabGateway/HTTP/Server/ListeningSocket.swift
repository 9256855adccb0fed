import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The server's listening socket, which SwiftNIO opens without close-on-exec: any program the
/// process starts inherits it, and kept the port bound after the gateway was gone (the Swift
/// runtime's crash reporter did, for minutes).
enum ListeningSocket {
    /// Marks close-on-exec every listening socket of this process bound to `port`. Linux only
    /// (it reads `/proc/self/fd`); elsewhere it does nothing.
    static func closeOnExec(port: Int?) {
        guard let port, let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else {
            return
        }
        for descriptor in entries.compactMap(Int32.init) where isListening(descriptor, on: port) {
            let flags = fcntl(descriptor, F_GETFD)
            if flags >= 0 { _ = fcntl(descriptor, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    private static func isListening(_ descriptor: Int32, on port: Int) -> Bool {
        var info = stat()
        guard fstat(descriptor, &info) == 0, info.st_mode & S_IFMT == S_IFSOCK else { return false }
        var listening: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(descriptor, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) == 0, listening != 0 else {
            return false
        }
        var address = sockaddr_storage()
        var addressLength = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(descriptor, $0, &addressLength) }
        }
        guard named == 0 else { return false }
        let boundPort: UInt16
        switch Int32(address.ss_family) {
        case AF_INET:
            boundPort = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin_port) }
            }
        case AF_INET6:
            boundPort = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { UInt16(bigEndian: $0.pointee.sin6_port) }
            }
        default:
            return false
        }
        return Int(boundPort) == port
    }
}
