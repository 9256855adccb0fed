import CProcessSpawn

/// Invocation ids: 128 random bits as 32 lowercase hex digits, so they cannot be guessed.
enum InvocationID {
    static func make() -> String {
        let bits = randomBits()
        // Written straight into the string: one allocation, no intermediate strings.
        return String(unsafeUninitializedCapacity: 32) { digits in
            for nibble in 0..<32 {
                let value = nibble < 16 ? bits.0 : bits.1
                let digit = UInt8(truncatingIfNeeded: value >> UInt64(60 - 4 * (nibble % 16))) & 0xF
                digits[nibble] = digit < 10 ? 48 + digit : 87 + digit  // 0-9, a-f
            }
            return 32
        }
    }

    /// 128 bits from the kernel's generator in one `getrandom` call
    /// (`SystemRandomNumberGenerator` makes one for each 64).
    private static func randomBits() -> (UInt64, UInt64) {
        var bits: (UInt64, UInt64) = (0, 0)
        let filled = withUnsafeMutableBytes(of: &bits) { prefab_random_bytes($0.baseAddress, $0.count) }
        if filled == MemoryLayout.size(ofValue: bits) { return bits }
        var generator = SystemRandomNumberGenerator()
        bits = (generator.next(), generator.next())
        return bits
    }

    static func isValid(_ text: some StringProtocol) -> Bool {
        text.utf8.count == 32 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }
}
