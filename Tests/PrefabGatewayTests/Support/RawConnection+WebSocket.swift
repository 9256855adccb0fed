import Foundation

/// The client side of a WebSocket on a raw connection, for what a WebSocket library hides: a
/// client that stops reading.
extension RawConnection {
    /// Asks for the upgrade and reads the 101 answer.
    func upgradeToWebSocket(_ path: String) async throws {
        try sendRaw(
            Array(
                ("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        let head = try await readOffPool(until: "\r\n\r\n")
        guard head.hasPrefix("HTTP/1.1 101") else { throw RawConnectionError("no upgrade: \(head.prefix(200))") }
    }

    /// Sends one text message in one frame, masked as a client must.
    func sendWebSocketText(_ text: String) throws {
        let payload = Array(text.utf8)
        var frame: [UInt8] = [0x81]
        switch payload.count {
        case ..<126: frame.append(0x80 | UInt8(payload.count))
        case ..<65536: frame += [0x80 | 126, UInt8(payload.count >> 8), UInt8(payload.count & 0xFF)]
        default:
            frame.append(0x80 | 127)
            frame += (0..<8).reversed().map { UInt8((payload.count >> ($0 * 8)) & 0xFF) }
        }
        let mask: [UInt8] = [0x12, 0x34, 0x56, 0x78]
        frame += mask
        frame += payload.enumerated().map { $0.element ^ mask[$0.offset % 4] }
        try sendRaw(frame)
    }
}
