import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A plain TCP connection for what HTTP clients hide: a client that stops reading, or one that
/// hangs up in the middle of a stream.
final class RawConnection: @unchecked Sendable {
    private var socketFD: Int32

    /// Connects to 127.0.0.1:`port`; `receiveBuffer` shrinks the kernel's receive buffer so a
    /// client that stops reading pushes back quickly.
    init(port: Int, receiveBuffer: Int32? = nil) throws {
        socketFD = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard socketFD >= 0 else { throw RawConnectionError("socket() failed") }
        if var size = receiveBuffer {
            setsockopt(socketFD, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        setsockopt(socketFD, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(socketFD, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard result == 0 else {
            close(socketFD)
            throw RawConnectionError("connect() failed")
        }
    }

    deinit { hangUp() }

    /// Sends a POST with a JSON body; `headers` are more header lines, each ending in CRLF.
    func sendPost(_ path: String, json: String, headers: String = "") throws {
        let request =
            "POST \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\(headers)"
            + "Content-Length: \(json.utf8.count)\r\n\r\n\(json)"
        let bytes = Array(request.utf8)
        let sent = bytes.withUnsafeBytes { send(socketFD, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw RawConnectionError("send() failed") }
    }

    /// Sends bytes as they are, however malformed.
    func sendRaw(_ bytes: [UInt8]) throws {
        let sent = bytes.withUnsafeBytes { send(socketFD, $0.baseAddress, $0.count, 0) }
        guard sent == bytes.count else { throw RawConnectionError("send() failed") }
    }

    /// Closes the sending side: the server sees the end of the request's bytes.
    func shutdownWrite() {
        shutdown(socketFD, Int32(SHUT_WR))
    }

    /// Everything the server sends until it closes the connection; throws when it neither answers
    /// nor closes within the receive timeout (10 s).
    func readToEnd() async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(
                    with: Result {
                        var received: [UInt8] = []
                        var chunk = [UInt8](repeating: 0, count: 4096)
                        while true {
                            let count = chunk.withUnsafeMutableBytes {
                                recv(self.socketFD, $0.baseAddress, $0.count, 0)
                            }
                            if count == 0 || (count < 0 && errno == ECONNRESET) { break }
                            guard count > 0 else {
                                throw RawConnectionError(
                                    "no answer and no close within 10 s, after \(received.count) bytes: "
                                        + String(decoding: received.suffix(300), as: UTF8.self))
                            }
                            received += chunk[0..<count]
                        }
                        return String(decoding: received, as: UTF8.self)
                    })
            }
            thread.start()
        }
    }

    /// Reads until the received text contains `marker`; returns everything read.
    func read(until marker: String, limit: Int = 1 << 20) throws -> String {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while received.count < limit {
            let count = chunk.withUnsafeMutableBytes { recv(socketFD, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { throw RawConnectionError("connection ended before '\(marker)'") }
            // Only the new bytes (and a marker's length before them) can complete the marker.
            let searchFrom = max(0, received.count - marker.utf8.count)
            received += chunk[0..<count]
            if String(decoding: received[searchFrom...], as: UTF8.self).contains(marker) { break }
        }
        return String(decoding: received, as: UTF8.self)
    }

    /// `read(until:)` on a thread of its own, so a test's wait never blocks the cooperative pool
    /// that the server in the same process needs.
    func readOffPool(until marker: String, limit: Int = 1 << 20) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try self.read(until: marker, limit: limit) })
            }
            thread.start()
        }
    }

    /// Closes the connection at once.
    func hangUp() {
        guard socketFD >= 0 else { return }
        close(socketFD)
        socketFD = -1
    }
}

struct RawConnectionError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
