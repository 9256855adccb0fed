#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Reads lines from a file descriptor as they are written, blocking, with a bound on line length
/// so a child that never prints a newline cannot grow the gateway's memory.
struct LineReader {
    enum Line {
        case line([UInt8])
        /// A line longer than the limit; what was read of it is dropped.
        case tooLong
        case end
    }

    private let fileDescriptor: Int32
    private let maxLineBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    /// Bytes after `start` already searched for a newline.
    private var scanned = 0
    private var atEnd = false
    /// After a line that was too long: drop bytes up to its newline.
    private var skippingLongLine = false
    /// What each read fills, made once: filling `buffer`'s own tail would zero 64 KiB per read.
    private var chunk: [UInt8] = []
    /// After a read of less than a quarter of `chunk`, wait this long before the next read.
    private let pauseAfterShortRead: Duration?
    private var lastReadWasShort = false

    /// `pauseAfterShortRead`: for a reader that need not see each line at once, so that a writer
    /// of a few lines at a time wakes it once per pause rather than once per write.
    init(fileDescriptor: Int32, maxLineBytes: Int, pauseAfterShortRead: Duration? = nil) {
        self.fileDescriptor = fileDescriptor
        self.maxLineBytes = maxLineBytes
        self.pauseAfterShortRead = pauseAfterShortRead
    }

    mutating func next() -> Line {
        while true {
            if let newline = buffer[(start + scanned)...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[start..<newline])
                start = newline + 1
                scanned = 0
                if skippingLongLine {
                    skippingLongLine = false
                    continue
                }
                return .line(line)
            }
            scanned = buffer.count - start
            if scanned > maxLineBytes || (skippingLongLine && scanned > 0) {
                buffer.removeAll(keepingCapacity: true)
                start = 0
                scanned = 0
                if skippingLongLine { continue }
                skippingLongLine = true
                return .tooLong
            }
            if atEnd {
                guard start < buffer.count, !skippingLongLine else { return .end }
                let rest = Array(buffer[start...])
                start = buffer.count
                return .line(rest)
            }
            if start > 0 {
                buffer.removeFirst(start)
                start = 0
            }
            fill()
        }
    }

    private mutating func fill() {
        if chunk.isEmpty { chunk = [UInt8](repeating: 0, count: 64 * 1024) }
        if lastReadWasShort, let pause = pauseAfterShortRead {
            let (seconds, attoseconds) = pause.components
            usleep(UInt32(seconds * 1_000_000 + attoseconds / 1_000_000_000_000))
        }
        let count = chunk.withUnsafeMutableBytes { bytes in
            var result: Int
            repeat {
                result = read(fileDescriptor, bytes.baseAddress!, bytes.count)
            } while result < 0 && errno == EINTR
            return result
        }
        if count <= 0 {
            atEnd = true
            return
        }
        lastReadWasShort = count < chunk.count / 4
        buffer.append(contentsOf: chunk[..<count])
    }
}
