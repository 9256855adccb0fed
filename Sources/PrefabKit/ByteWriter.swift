/// Writes bytes through a pointer into memory its caller has sized for them (a stack buffer).
///
/// The encoder's hot path: an `Array` append checks uniqueness and capacity each time (callgrind:
/// about 70 instructions an append, eight appends for a `content` event's SSE message), where
/// this is a store.
struct ByteWriter {
    /// Where the next byte goes.
    private(set) var position: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) {
        position = start
    }

    /// The most bytes `writeInteger` writes (`-9223372036854775808`).
    static let integerBytes = 20

    /// The most bytes `writeJSONString` writes for a string of `count` UTF-8 bytes: each byte
    /// escaped as `\u00XX`, and the quotes.
    static func jsonStringBytes(count: Int) -> Int { count * 6 + 2 }

    mutating func write(_ byte: UInt8) {
        position.pointee = byte
        position += 1
    }

    /// A literal, straight from its pointer (through `withUTF8Buffer`, 46 instructions).
    mutating func write(_ text: StaticString) {
        position.update(from: text.utf8Start, count: text.utf8CodeUnitCount)
        position += text.utf8CodeUnitCount
    }

    mutating func write(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        position.update(from: base, count: bytes.count)
        position += bytes.count
    }

    /// Decimal digits, without going through `String`.
    mutating func writeInteger(_ value: Int) {
        var magnitude = value.magnitude
        if value < 0 { write(UInt8(ascii: "-")) }
        var digits = 1
        var rest = magnitude / 10
        while rest > 0 {
            digits += 1
            rest /= 10
        }
        position += digits
        var digit = position
        repeat {
            digit -= 1
            digit.pointee = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: magnitude % 10)
            magnitude /= 10
        } while magnitude > 0
    }

    /// `utf8` as a quoted JSON string literal (see ``JSONValue/appendJSONString(_:to:)``), a byte
    /// at a time: for the short strings of an event (its type, a token of text).
    mutating func writeJSONString(_ utf8: some Sequence<UInt8>) {
        write(UInt8(ascii: "\""))
        let start = position
        for byte in utf8 {
            guard byte >= 0x20, byte != UInt8(ascii: "\""), byte != UInt8(ascii: "\\") else {
                writeEscape(of: byte)
                continue
            }
            write(byte)
            // U+2028 and U+2029 (E2 80 A8/A9) break JavaScript consumers: once written whole, they are
            // written again escaped.
            if byte & 0xFE == 0xA8, position - start >= 3, position[-2] == 0x80, position[-3] == 0xE2 {
                position -= 3
                write(byte == 0xA8 ? "\\u2028" : "\\u2029")
            }
        }
        write(UInt8(ascii: "\""))
    }

    /// `writeJSONString` of a `String`, from its UTF-8 storage (iterating its `utf8` view took
    /// about 290 instructions for a one-letter string).
    mutating func writeJSONString(_ string: String) {
        let written: Void? = string.utf8.withContiguousStorageIfAvailable { writeJSONString($0) }
        if written == nil { writeJSONString(string.utf8) }
    }

    /// The escape of a byte JSON text may not hold as it is (`\"`, `\n`, `\u001b`, ...).
    mutating func writeEscape(of byte: UInt8) {
        let backslash = UInt8(ascii: "\\")
        switch byte {
        case UInt8(ascii: "\""): write(backslash); write(UInt8(ascii: "\""))
        case UInt8(ascii: "\\"): write(backslash); write(backslash)
        case 0x0A: write(backslash); write(UInt8(ascii: "n"))
        case 0x0D: write(backslash); write(UInt8(ascii: "r"))
        case 0x09: write(backslash); write(UInt8(ascii: "t"))
        case 0x08: write(backslash); write(UInt8(ascii: "b"))
        case 0x0C: write(backslash); write(UInt8(ascii: "f"))
        default:
            let hexDigits: StaticString = "0123456789abcdef"
            write("\\u00")
            write(hexDigits.utf8Start[Int(byte >> 4)])
            write(hexDigits.utf8Start[Int(byte & 0x0F)])
        }
    }

    /// Runs `write` on a stack buffer of `capacity` bytes and appends what it wrote to `bytes`
    /// in one go.
    static func append(capacity: Int, to bytes: inout [UInt8], _ write: (inout ByteWriter) -> Void) {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: capacity) { buffer in
            let start = buffer.baseAddress!
            var writer = ByteWriter(start)
            write(&writer)
            precondition(writer.position - start <= capacity, "a ByteWriter wrote past its buffer")
            bytes.append(contentsOf: UnsafeBufferPointer(start: start, count: writer.position - start))
        }
    }
}
