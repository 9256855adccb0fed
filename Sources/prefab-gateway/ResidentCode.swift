import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps the gateway's idle memory small. The executable's code is one large file mapping (about
/// 33 MB with the Swift runtime and Foundation linked in); Linux maps 64 KiB around every page the
/// program touches ("fault-around"), so scattered start-up code made most of it resident. Marked
/// random-access, only the pages actually run are mapped.
enum ResidentCode {
    static func trim() {
        #if os(Linux)
            guard let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8),
                let executable = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
            else { return }
            for line in maps.split(separator: "\n") where line.hasSuffix(executable) {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 2, fields[1].hasPrefix("r-x") else { continue }
                let bounds = fields[0].split(separator: "-").compactMap { UInt(String($0), radix: 16) }
                guard bounds.count == 2, let start = UnsafeMutableRawPointer(bitPattern: bounds[0]) else { continue }
                let length = Int(bounds[1] - bounds[0])
                madvise(start, length, MADV_RANDOM)
                // Unmap what start-up touched; the pages still in use come back one by one.
                madvise(start, length, MADV_DONTNEED)
            }
        #endif
    }
}
