import Foundation
import PrefabGateway

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps the gateway's idle memory small. The executable's code is one large file mapping (about
/// 33 MB with the Swift runtime and Foundation linked in), and the shared libraries add their own
/// (libcurl and the TLS and Kerberos libraries behind it come with Foundation's networking, which
/// the MCP SDK links and the gateway never calls; the loader reads their symbol tables whole).
/// Linux maps 64 KiB around every page a program touches ("fault-around"), so scattered start-up
/// code made most of it resident. Marked random-access and dropped after start-up, only the pages
/// actually used come back, read again from their files.
enum ResidentCode {
    static func trim() {
        #if os(Linux)
            guard let smaps = readAll("/proc/self/smaps") else { return }
            for mapping in cleanFileMappings(smaps) {
                guard let start = UnsafeMutableRawPointer(bitPattern: mapping.lowerBound) else { continue }
                let length = Int(mapping.upperBound - mapping.lowerBound)
                madvise(start, length, MADV_RANDOM)
                // Unmap what start-up touched; the pages still in use come back one by one.
                madvise(start, length, MADV_DONTNEED)
            }
        #endif
    }

    /// Gives back the code and the free heap a busy spell brought in once the gateway has been
    /// quiet for `quiet` (no call started or running), once per quiet spell, until the task is
    /// cancelled. A server idles most of its life: after 200 `echo` calls RSS otherwise stayed
    /// where the calls left it until the next call. The first call after maps its code again.
    static func trimWhenQuiet(_ gateway: Gateway, quiet: Duration) async {
        var spell = QuietSpell(after: quiet)
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(1))
            guard spell.hasBegun(gateway.callActivity) else { continue }
            trim()
            Allocator.giveBackFreeMemory()
        }
    }

    /// A file read to its end. `String(contentsOfFile:)` stops after the first read of a `/proc`
    /// file, which the kernel answers a page at a time.
    static func readAll(_ path: String) -> String? {
        #if os(Linux)
            let descriptor = open(path, O_RDONLY | O_CLOEXEC)
            guard descriptor >= 0 else { return nil }
            defer { close(descriptor) }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 1 << 16)
            while true {
                let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
                if count < 0, errno == EINTR { continue }
                guard count > 0 else { break }
                bytes += chunk[0..<count]
            }
            return String(decoding: bytes, as: UTF8.self)
        #else
            return nil
        #endif
    }

    /// The read-only and executable mappings of files that hold no page of their own (`Anonymous: 0`, no
    /// page copied on write): dropping their pages loses nothing, since each is read back from the
    /// file when next run. (`Private_Dirty` would also count a freshly built binary's pages that
    /// are not yet written back to disk.)
    ///
    /// Read as bytes: split as a `String`, the gateway's 210 KB of smaps took 18–33 ms, 4.5 ms so.
    static func cleanFileMappings(_ smaps: String) -> [Range<UInt>] {
        var found: [Range<UInt>] = []
        var current: Range<UInt>?
        for line in smaps.utf8.split(separator: UInt8(ascii: "\n")) {
            let fields = line.split(separator: UInt8(ascii: " "))
            guard let first = fields.first else { continue }
            if first.contains(UInt8(ascii: "-")), first.last != UInt8(ascii: ":") {
                // A mapping's header: range, permissions, offset, device, inode, path.
                current = nil
                guard fields.count >= 6, fields[1].starts(with: "r-x".utf8) || fields[1].starts(with: "r--".utf8),
                    fields[5].first == UInt8(ascii: "/")
                else { continue }
                let bounds = first.split(separator: UInt8(ascii: "-")).compactMap {
                    UInt(String(decoding: $0, as: UTF8.self), radix: 16)
                }
                if bounds.count == 2, bounds[0] < bounds[1] { current = bounds[0]..<bounds[1] }
            } else if first.elementsEqual("Anonymous:".utf8), let range = current {
                if fields.count >= 2, fields[1].elementsEqual("0".utf8) { found.append(range) }
                current = nil
            }
        }
        return found
    }
}
