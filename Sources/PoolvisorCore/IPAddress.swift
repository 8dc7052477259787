/// IP address literals, checked without the resolver: a probe's host is an address, never a name to
/// look up (a lookup can hang, and the event loop must not).
public enum IPAddress {
    /// "127.0.0.1" or "::1" (no brackets, no zone).
    public static func isLiteral(_ text: String) -> Bool { isIPv4(Substring(text)) || isIPv6(text) }

    public static func isIPv6Literal(_ text: String) -> Bool { isIPv6(text) }

    static func isIPv4(_ text: Substring) -> Bool {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                (1...3).contains(part.count) && part.allSatisfy(\.isASCIIDigit) && Int(part)! <= 255 && (part.count == 1 || part.first != "0")
            }
    }

    static func isIPv6(_ text: String) -> Bool {
        guard text.contains(":"), text.count <= 45 else { return false }
        let halves = pieces(of: text, around: "::")
        guard halves.count <= 2 else { return false }
        var groups = 0
        for (h, half) in halves.enumerated() where !half.isEmpty {
            let parts = half.split(separator: ":", omittingEmptySubsequences: false)
            for (i, part) in parts.enumerated() {
                // An IPv4 address may end the last half ("::ffff:127.0.0.1"), as two groups.
                if i == parts.count - 1, h == halves.count - 1, part.contains(".") {
                    guard isIPv4(part) else { return false }
                    groups += 2
                    continue
                }
                guard (1...4).contains(part.count), part.allSatisfy(\.isHexDigit) else { return false }
                groups += 1
            }
        }
        return halves.count == 2 ? groups <= 7 : groups == 8
    }
}

extension Character {
    fileprivate var isASCIIDigit: Bool { ("0"..."9").contains(self) }
}

/// `text` split around each `separator`.
private func pieces(of text: String, around separator: String) -> [Substring] {
    var out: [Substring] = []
    var rest = Substring(text)
    while let range = rest.firstRange(of: separator) {
        out.append(rest[..<range.lowerBound])
        rest = rest[range.upperBound...]
    }
    out.append(rest)
    return out
}
