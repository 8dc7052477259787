import Foundation
import Testing

/// The layering of docs/ARCHITECTURE.md, read from the sources: what each target imports. (The build in
/// `scripts/test` also refuses an import a target does not declare; this says what may be declared.)
@Suite struct LayeringTests {
    static let sources = URLPath.packageRoot + "/Sources"

    /// The modules a target's files import, with the file that imports each.
    static func imports(of target: String) -> [(module: String, file: String)] {
        var out: [(String, String)] = []
        for file in SourceTree.files(in: sources + "/" + target) where file.hasSuffix(".swift") {
            for line in SourceTree.lines(of: file) {
                let words = line.split(separator: " ")
                if let i = words.firstIndex(of: "import"), i <= 1, words.count > i + 1,
                    i == 0 || words[0] == "@testable" || words[0].hasPrefix("@_")
                {
                    out.append((String(words[i + 1]), file))
                }
            }
        }
        return out
    }

    @Test func theCoreImportsNothingButTheStandardLibrary() {
        let imports = Self.imports(of: "PoolvisorCore")
        #expect(!SourceTree.files(in: Self.sources + "/PoolvisorCore").isEmpty)
        for (module, file) in imports { Issue.record("\(file) imports \(module)") }
    }

    @Test func noTargetImportsWhatTheRulesForbid() {
        let forbidden: [String: Set<String>] = [
            "PoolvisorLinux": ["PoolvisorConfig", "PoolvisorDaemon", "PoolvisorScalers", "Logging", "TOMLKit"],
            "PoolvisorScalers": ["PoolvisorLinux", "PoolvisorDaemon", "PoolvisorConfig", "Foundation"],
            "PoolvisorConfig": ["PoolvisorLinux", "PoolvisorDaemon", "PoolvisorScalers", "PoolvisorSystem", "Glibc"],
            "PoolvisorControl": ["PoolvisorLinux", "PoolvisorDaemon", "PoolvisorScalers", "PoolvisorConfig", "Glibc", "Foundation"],
            "PoolvisorSystem": ["PoolvisorLinux", "PoolvisorDaemon", "PoolvisorScalers", "PoolvisorConfig", "PoolvisorControl"],
            // Pure: a PoolsFile and YAML text in, text out (Foundation for its JSON coder only).
            "PoolvisorExport": ["PoolvisorLinux", "PoolvisorDaemon", "PoolvisorScalers", "PoolvisorConfig", "PoolvisorSystem", "Glibc"],
        ]
        for (target, modules) in forbidden {
            #expect(!SourceTree.files(in: Self.sources + "/" + target).isEmpty, "\(target) has no sources")
            for (module, file) in Self.imports(of: target) where modules.contains(module) {
                Issue.record("\(file) imports \(module), which \(target) must not")
            }
        }
    }
}

enum URLPath {
    /// The package's root: three levels above this file (Tests/PoolvisorCoreTests/LayeringTests.swift).
    static var packageRoot: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }
}

/// The source tree, read as files.
enum SourceTree {
    static func files(in directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).sorted().map { directory + "/" + $0 }
    }

    static func lines(of file: String) -> [Substring] {
        ((try? String(contentsOfFile: file, encoding: .utf8)) ?? "").split(separator: "\n")
    }
}
