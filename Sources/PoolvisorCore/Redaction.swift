/// `message` with every occurrence of each secret replaced by `***`: how an error text from libpq or
/// hiredis is cleaned of the connection string, the URL and the password before it reaches status or the log.
///
/// Secrets shorter than 4 characters are skipped (replacing "a" or "12" would mangle the message and
/// protect nothing). Longer secrets are replaced first, so that a URL is replaced as a whole before the
/// password inside it. Matching is on UTF-8 bytes, so a secret is found whatever the surrounding text.
public func redacting(_ message: String, secrets: [String]) -> String {
    let candidates = Set(secrets.filter { $0.count >= 4 }).sorted { $0.utf8.count > $1.utf8.count }
    guard !candidates.isEmpty else { return message }
    var bytes = Array(message.utf8)
    let mask = Array("***".utf8)
    for secret in candidates {
        let needle = Array(secret.utf8)
        guard bytes.count >= needle.count else { continue }
        bytes = replacingOccurrences(of: needle, in: bytes, with: mask)
    }
    return String(decoding: bytes, as: UTF8.self)
}

private func replacingOccurrences(of needle: [UInt8], in haystack: [UInt8], with replacement: [UInt8]) -> [UInt8] {
    var result: [UInt8] = []
    result.reserveCapacity(haystack.count)
    var i = 0
    let last = haystack.count - needle.count
    while i < haystack.count {
        if i <= last, haystack[i] == needle[0], haystack[i..<(i + needle.count)].elementsEqual(needle) {
            result.append(contentsOf: replacement)
            i += needle.count
        } else {
            result.append(haystack[i])
            i += 1
        }
    }
    return result
}
