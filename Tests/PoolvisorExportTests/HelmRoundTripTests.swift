import Foundation
import PoolvisorCore
import PoolvisorDaemon
import Testing
import Yams

@testable import PoolvisorExport

/// The seed chart's values → `import helm-values` → a pools file `check` accepts → `export helm-values`
/// → the same pool keys with the same values.
@Suite struct HelmRoundTripTests {
    static let root = ExportTests.root

    static func file(_ name: String) throws -> HelmValuesImport.File {
        HelmValuesImport.File(name: name, text: try String(contentsOfFile: root + "/examples/helm/" + name, encoding: .utf8))
    }

    /// The keys a pool of the chart has that poolvisor carries over (scheduling keys have no meaning
    /// on one host; `command` and `args` are folded into the pool's command).
    static let carried: Set<String> = [
        "enabled", "replicaCount", "workerSubscribe", "workerSubscribeTenants", "workerSubscribeWorkspaces", "envSecretRef", "resources",
        "autoscaling", "podDisruptionBudget",
    ]

    /// Helm's merge, for what the test expects: maps merge, later wins, lists replace, null deletes.
    static func merge(_ base: Any?, _ overlay: Any?) -> Any? {
        guard let overlay else { return base }
        if overlay is NSNull { return nil }
        guard let b = base as? [String: Any], let o = overlay as? [String: Any] else { return overlay }
        var out = b
        for (key, value) in o {
            if value is NSNull { out[key] = nil } else { out[key] = merge(b[key], value) }
        }
        return out
    }

    static func pools(_ values: Any?) -> [String: [String: Any]] {
        ((values as? [String: Any])?["worker"] as? [String: Any])?["pools"] as? [String: [String: Any]] ?? [:]
    }

    @Test(arguments: [["values.yaml"], ["values.yaml", "values-tenant-acme.yaml"], ["values-kb-release.yaml"]])
    func theSeedValuesComeBackWithTheSamePoolKeys(names: [String]) throws {
        let files = try names.map(Self.file)
        let output = HelmValuesImport.convert(files, options: .init(instance: "noxus"))
        #expect(output.diagnostics.errors.isEmpty, "\(output.diagnostics)")
        let toml = try #require(output.toml)
        // `check` as export runs it (env files unread); HelmValuesImportTests loads it with them too.
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("roundtrip-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try toml.write(toFile: dir + "/pools.toml", atomically: true, encoding: .utf8)
        let loaded = PoolsFileLoader.load(dir + "/pools.toml", parser: .inProcess, host: ExportHost())
        #expect(loaded.diagnostics.errors.isEmpty, "\(loaded.diagnostics)\n\(toml)")
        let pools = try #require(loaded.file)
        let exported = try Yams.load(yaml: Export.text(of: Export.render(pools, as: .helmValues)))

        var merged: Any? = nil
        for file in files { merged = Self.merge(merged, try Yams.load(yaml: file.text)) }
        let original = Self.pools(merged)
        let back = Self.pools(exported)
        #expect(Set(back.keys) == Set(original.keys))
        for (name, values) in original {
            let returned = try #require(back[name], "pool \(name)")
            for key in Self.carried where values[key] != nil {
                // A disabled autoscaling or budget block is not carried over (it is a comment).
                if let block = values[key] as? [String: Any], block["enabled"] as? Bool != true, key == "autoscaling" || key == "podDisruptionBudget" {
                    #expect(returned[key] == nil, "\(name).\(key)")
                    continue
                }
                let difference = Self.difference(values[key], returned[key], at: "\(name).\(key)")
                #expect(difference == nil, "\(names): \(difference ?? "")")
            }
        }
    }

    /// Whether everything `want` says, `got` says too (maps: key by key, recursively; what the export
    /// adds, such as behaviour defaults, is not a difference), with what Kubernetes treats as equal
    /// made alike (`"2"` and `2` cores, `"5"` and `5`, `"a,b"` and `[a, b]`). Where not, the path.
    static func difference(_ want: Any?, _ got: Any?, at path: String) -> String? {
        switch (want, got) {
        case (let w as [String: Any], let g as [String: Any]):
            for (key, value) in w.sorted(by: { $0.key < $1.key }) where !notCarried.contains(key) {
                if let d = difference(value, g[key], at: path + "." + key) { return d }
            }
            return nil
        case (let w as [Any], let g as [Any]):
            guard w.count == g.count else { return "\(path): \(w) ≠ \(g)" }
            for (i, (a, b)) in zip(w, g).enumerated() {
                if let d = difference(a, b, at: "\(path)[\(i)]") { return d }
            }
            return nil
        case (let w as String, let g as [Any]) where path.hasSuffix("Tenants") || path.hasSuffix("Workspaces"):
            return difference(w.split(separator: ",").map(String.init), g, at: path)
        case (nil, nil): return nil
        case (let w as [String: Any], nil) where w["enabled"] as? Bool == false: return nil  // off is the same as absent
        case (let w?, let g?) where "\(w)" == "\(g)": return nil
        default: return "\(path): \(want.map { "\($0)" } ?? "nil") ≠ \(got.map { "\($0)" } ?? "nil")"
        }
    }

    /// Chart keys poolvisor has no use for on one host (an import comment says so).
    static let notCarried: Set<String> = ["ephemeral-storage"]
}
