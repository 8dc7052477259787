import Foundation
import PoolvisorConfig
import PoolvisorCore
import PoolvisorDaemon
import Testing

@testable import PoolvisorExport

// `poolvisor import helm-values`: the seed chart's values as a pools file, loaded by the real loader.

/// `examples/helm/NAME` as the import reads it.
private func example(_ name: String) throws -> HelmValuesImport.File {
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    let path = root.appendingPathComponent("examples/helm/\(name)").path
    return HelmValuesImport.File(name: name, text: try String(contentsOfFile: path, encoding: .utf8))
}

private func values(_ text: String, name: String = "values.yaml") -> HelmValuesImport.File {
    HelmValuesImport.File(name: name, text: text)
}

/// A directory with the env files the examples name (mode 0600), holding DATABASE_URL.
private func envDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("helm-import-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for secret in ["noxus-worker-env", "noxus-worker-env-acme", "noxus-kb-worker-env", "app-env"] {
        let path = "\(dir)/\(secret).env"
        try "DATABASE_URL=postgresql://worker:secret@127.0.0.1:5432/noxus\nLOG_LEVEL=info\n".write(toFile: path, atomically: false, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
    }
    return dir
}

/// The import's TOML, loaded as `poolvisor check` loads a pools file.
private func load(_ files: [HelmValuesImport.File], release: String = "poolvisor", command: [String]? = nil) throws -> (String, PoolsFile) {
    let dir = try envDirectory()
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let output = HelmValuesImport.convert(files, options: HelmValuesImport.Options(envDirectory: dir, instance: release, command: command))
    #expect(output.diagnostics.errors.isEmpty, "\(output.diagnostics)")
    let toml = try #require(output.toml)
    let result = PoolsFileLoader.load(text: toml, path: "\(dir)/pools.toml", parser: .inProcess, host: LinuxHost())
    #expect(result.diagnostics.errors.isEmpty, "\(result.diagnostics)\n\(toml)")
    return (toml, try #require(result.file))
}

private func errors(_ files: [HelmValuesImport.File], command: [String]? = ["/bin/sleep", "1000"]) -> [String] {
    let output = HelmValuesImport.convert(files, options: HelmValuesImport.Options(command: command))
    #expect(output.toml == nil)
    return output.diagnostics.errors.map(\.description)
}

// MARK: - merging

@Test func laterFilesWinMapsMergeListsAreReplacedAndNullDeletes() throws {
    let base = try HelmValuesReader.read("a: {b: 1, c: [1, 2], d: {e: x, f: y}, g: keep}\nh: 1\n", file: "base.yaml").get()
    let over = try HelmValuesReader.read("a: {b: 2, c: [3], d: {f: z}, g: null}\ni: new\n", file: "over.yaml").get()
    let merged = try #require(HelmValuesMerge.merge([base, over]))
    let a = try #require(merged["a"])
    #expect(a.entries.map(\.key) == ["b", "c", "d"])
    guard case .integer(2) = a["b"]?.kind else {
        Issue.record("b: \(String(describing: a["b"]))")
        return
    }
    guard case .list(let c) = a["c"]?.kind, c.count == 1, case .integer(3) = c[0].kind else {
        Issue.record("c was merged, not replaced")
        return
    }
    guard case .string("x") = a["d"]?["e"]?.kind, case .string("z") = a["d"]?["f"]?.kind else {
        Issue.record("d was not merged deeply")
        return
    }
    #expect(a["g"] == nil)
    #expect(merged.entries.map(\.key) == ["a", "h", "i"])
    // The origin of each value is the file that wrote it.
    #expect(a["b"]?.origin.file == "over.yaml")
    #expect(a["d"]?["e"]?.origin.file == "base.yaml")
}

@Test func anOverlayDisablesAPoolAndDeletesItsBudget() throws {
    let (_, file) = try load([
        values("worker:\n  command: [/bin/sleep, '1000']\n  pools:\n    a: {replicaCount: 2, podDisruptionBudget: {enabled: true, minAvailable: 1}}\n    b: {replicaCount: 1}\n"),
        values("worker:\n  pools:\n    a: {podDisruptionBudget: null}\n    b: {enabled: false}\n", name: "over.yaml"),
    ])
    #expect(file.pools.map(\.name) == ["a", "b"])
    #expect(file.pools[0].disruptionBudget == nil)
    #expect(file.pools[0].replicas == 2)
    #expect(file.pools[1].enabled == false)
}

// MARK: - the examples

@Test func theExampleValuesImportAndLoad() throws {
    let (toml, file) = try load([try example("values.yaml")])
    #expect(file.supervisor.name == "poolvisor")
    #expect(file.pools.map(\.name) == ["chat", "default", "kb"])
    let chat = file.pools[0]
    let def = file.pools[1]
    let kb = file.pools[2]
    #expect(def.replicas == 2 && def.subscription == .allButKb && def.autoscaling == nil)
    #expect(def.disruptionBudget == .minAvailable(.count(1)))
    #expect(def.command == ["/usr/bin/python3", "-m", "noxus.worker", "--log-level", "info"])
    #expect(def.resources.cpuRequest == 0.5 && def.resources.memoryLimit == 2 << 30)

    let a = try #require(chat.autoscaling)
    #expect(a.kind == .keda && a.rules.minReplicas == 0 && a.rules.maxReplicas == 8)
    #expect(a.pollingInterval == .seconds(10))
    #expect(a.queue?.target == 5 && a.queue?.connectionVariable == "DATABASE_URL")
    #expect(a.rules.scaleDown.stabilizationWindow == .seconds(300))
    #expect(a.rules.scaleDown.policies.count == 1 && a.rules.scaleUp.policies.count == 1)
    #expect(a.cron != nil)  // worker.keda's office hours
    #expect(chat.disruptionBudget == .maxUnavailable(.percent(25)))

    let h = try #require(kb.autoscaling)
    #expect(h.kind == .hpa && h.rules.minReplicas == 1 && h.rules.maxReplicas == 4 && h.cpuTarget == 75)
    #expect(kb.disruptionBudget == nil)
    #expect(kb.envFile?.written.hasSuffix("/noxus-worker-env.env") == true)

    // Kubernetes-only keys are comments, never keys; the connection string's secret is named, not copied.
    #expect(toml.contains("#   worker.affinity: placing pods on nodes does not apply on one host"))
    #expect(toml.contains("#   worker.nodeSelector:"))
    #expect(toml.contains("#   worker.tolerations:"))
    #expect(toml.contains("#   worker.image: the pools file runs `command` on this host"))
    #expect(toml.contains("#   worker.pools.kb.topologySpreadConstraints:"))
    #expect(toml.contains("kubectl get secret noxus-worker-env -o json | jq -r"))
    #expect(toml.contains("postgres_connection_env = \"DATABASE_URL\""))
    #expect(toml.contains("the Kubernetes secret 'noxus-db'"))
}

@Test func theAcmeOverlayAddsItsPoolAndOverridesChat() throws {
    let (toml, file) = try load([try example("values.yaml"), try example("values-tenant-acme.yaml")], release: "noxus")
    #expect(file.supervisor.name == "noxus")
    #expect(file.pools.map(\.name) == ["acme", "chat", "default", "kb"])
    let acme = file.pools[0]
    #expect(acme.tenants == ["acme"] && acme.subscription == .all && acme.replicas == 2)
    #expect(acme.envFile?.written.hasSuffix("/noxus-worker-env-acme.env") == true)
    #expect(file.pools[1].autoscaling?.rules.maxReplicas == 4)
    #expect(file.pools[1].autoscaling?.cron == nil)
    #expect(file.pools[2].disruptionBudget == nil)
    #expect(toml.contains("#   worker.pools.acme.nodeSelector:"))
}

@Test func theKbReleaseRunsOnlyKb() throws {
    let (_, file) = try load([try example("values-kb-release.yaml")], release: "noxus-kb")
    #expect(file.supervisor.name == "noxus-kb")
    #expect(file.pools.filter(\.enabled).map(\.name) == ["kb"])
    let kb = try #require(file.pools.first { $0.name == "kb" })
    #expect(kb.workspaces == ["ws-legal", "ws-research"])
    let a = try #require(kb.autoscaling)
    #expect(a.kind == .keda && a.rules.minReplicas == 1 && a.rules.maxReplicas == 6)
    #expect(a.queue?.target == 2 && a.rules.cooldown == .seconds(600))
    #expect(a.pollingInterval == .seconds(30))
    #expect(kb.disruptionBudget == .maxUnavailable(.count(1)))
}

// MARK: - each key

@Test func everyPoolKeyIsMapped() throws {
    let (toml, file) = try load([
        values(
            """
            worker:
              command: ["/bin/sleep"]
              args: ["1000"]
              envSecretRef: app-env
              terminationGracePeriodSeconds: 45
              env: [{name: SHARED, value: "1"}]
              keda:
                fallback: {failureThreshold: 4, replicas: 2}
              pools:
                w:
                  enabled: true
                  replicaCount: 3
                  workerSubscribe: flow
                  workerSubscribeTenants: "t1,t2"
                  workerSubscribeWorkspaces: [w1]
                  envSecretRef: {name: noxus-worker-env}
                  terminationGracePeriodSeconds: 90
                  env: [{name: OWN, value: 7}]
                  args: ["2000"]
                  resources: {requests: {cpu: 0.25, memory: 128Mi}, limits: {cpu: 1, memory: 1G}}
                  autoscaling:
                    enabled: true
                    minReplicas: 1
                    maxReplicas: 5
                    keda:
                      query: SELECT 1
                      targetQueryValue: 3
                      activationTargetQueryValue: 1
                      connectionFromEnv: DATABASE_URL
                      cooldownPeriod: 120
                      cronTrigger: {timezone: UTC, start: "0 9 * * *", end: "0 17 * * *", desiredReplicas: 2}
                    behavior:
                      scaleUp: {selectPolicy: Disabled, policies: [{type: Pods, value: 1, periodSeconds: 30}]}
            """)
    ])
    let w = try #require(file.pools.first)
    #expect(w.command == ["/bin/sleep", "2000"])
    #expect(w.replicas == 3 && w.subscription == .flow && w.tenants == ["t1", "t2"] && w.workspaces == ["w1"])
    #expect(w.drain == .seconds(90) && file.supervisor.drain == .seconds(45))
    #expect(file.supervisor.envFile?.written.hasSuffix("/app-env.env") == true)
    #expect(toml.contains("[env]\nSHARED = \"1\"") && toml.contains("[pools.w.env]\nOWN = \"7\""))
    #expect(w.resources.cpuRequest == 0.25 && w.resources.memoryRequest == 128 << 20 && w.resources.memoryLimit == 1_000_000_000)
    let a = try #require(w.autoscaling)
    #expect(a.kind == .keda && a.queue?.activation == 1 && a.rules.cooldown == .seconds(120))
    #expect(a.cron?.replicas == 2)
    #expect(a.fallback?.replicas == 2 && a.fallback?.failureThreshold == 4)
    #expect(a.rules.scaleUp.select == .disabled)
}

@Test func theCommandComesFromTheOptionWhenTheValuesHaveNone() throws {
    let text = "worker:\n  pools:\n    a: {replicaCount: 1}\n"
    let (_, file) = try load([values(text)], command: ["/bin/sleep", "1000"])
    #expect(file.pools[0].command == ["/bin/sleep", "1000"])
    let found = errors([values(text)], command: nil)
    #expect(found.count == 1)
    #expect(found.first?.contains("worker.pools.a: no command to run") == true)
    #expect(found.first?.contains("--command") == true)
}

@Test func unknownKeysAreCommentsAndWarningsNamingFileAndKey() throws {
    let output = HelmValuesImport.convert(
        [values("worker:\n  pools:\n    a:\n      replicaCount: 1\n      colour: blue\n      livenessProbe: {exec: {command: [true]}}\n", name: "team.yaml")],
        options: HelmValuesImport.Options(command: ["/bin/sleep"]))
    let toml = try #require(output.toml)
    #expect(toml.contains("#   worker.pools.a.colour: not a key of the chart that poolvisor knows"))
    #expect(toml.contains("#   worker.pools.a.livenessProbe: write it as [pools.NAME.liveness_probe]"))
    let warnings = output.diagnostics.warnings.map(\.description)
    #expect(warnings.contains("team.yaml:5: warning: worker.pools.a.colour: unknown key, not imported"))
    #expect(warnings.contains { $0.hasPrefix("team.yaml:6: warning: worker.pools.a.livenessProbe: not imported") })
}

@Test func aConnectionStringInTheValuesIsNeverCopied() throws {
    let output = HelmValuesImport.convert(
        [values("worker:\n  keda: {connection: 'postgresql://u:hunter2@db/x', query: SELECT 1, targetQueryValue: 1}\n  pools: {a: {replicaCount: 1}}\n")],
        options: HelmValuesImport.Options(command: ["/bin/sleep"]))
    let toml = try #require(output.toml)
    #expect(!toml.contains("hunter2"))
    #expect(!output.diagnostics.map(\.description).joined().contains("hunter2"))
    #expect(output.diagnostics.warnings.first?.description.contains("worker.keda.connection: not copied") == true)
}

@Test func textThatOnlyLooksLikeAnAnchorIsRead() throws {
    let (_, file) = try load([
        values(
            """
            worker:
              command: ["/bin/sh", "-c", "sleep 1000 && echo &done"]   # a && b, &x in a comment
              keda:
                query: |
                  SELECT count(*) FROM runs
                  * &weird
                targetQueryValue: 1
                cronTrigger: {start: 0 9 * * 1-5, end: '0 17 * * *', desiredReplicas: 1}
              pools:
                a: {replicaCount: 1, envSecretRef: app-env, autoscaling: {enabled: true, maxReplicas: 2}}
            """)
    ])
    #expect(file.pools[0].command == ["/bin/sh", "-c", "sleep 1000 && echo &done"])
}

// MARK: - hostile input

@Test func outOfRangeNumbersNameFileLineAndKeyPath() {
    let found = errors([values("worker:\n  pools:\n    chat:\n      replicaCount: -1\n      autoscaling: {enabled: true, maxReplicas: 99999999999999999999999}\n")])
    #expect(found.contains("values.yaml:4: error: worker.pools.chat.replicaCount: must be 0…10000, not -1"))
    #expect(found.contains { $0.hasPrefix("values.yaml:5: error: worker.pools.chat.autoscaling.maxReplicas: must be") }, "\(found)")
}

@Test func wrongTypesAreNamed() {
    let found = errors([
        values(
            "worker:\n  pools:\n    a:\n      replicaCount: two\n      enabled: maybe\n      resources: {limits: {memory: lots}}\n      workerSubscribe: al\n      envSecretRef: ../../etc/shadow\n"
        )
    ])
    #expect(found.contains("values.yaml:4: error: worker.pools.a.replicaCount: must be an integer 0…10000, not \"two\" (a string)"))
    #expect(found.contains("values.yaml:5: error: worker.pools.a.enabled: must be true or false, not \"maybe\" (a string)"))
    #expect(found.contains { $0.contains("worker.pools.a.resources.limits.memory: must be a quantity") })
    #expect(found.contains { $0.contains("worker.pools.a.workerSubscribe: must be one of 'all', 'all_but_kb'") })
    #expect(found.contains { $0.contains("worker.pools.a.envSecretRef: '../../etc/shadow' is not a Kubernetes secret's name") })
    #expect(errors([values("worker:\n  pools: [a, b]\n")]).first?.contains("worker.pools: must be a map of pools") == true)
    #expect(errors([values("- a\n- b\n")]).first?.contains("the values must be a map") == true)
}

@Test func aYAMLSyntaxErrorNamesFileAndLine() {
    let found = errors([values("worker:\n  pools:\n    a: {replicaCount: 1\n  b: c\n", name: "broken.yaml")])
    #expect(found.count == 1)
    #expect(found.first?.hasPrefix("broken.yaml:4:") == true, "\(found)")
    let duplicate = errors([values("worker:\n  pools: {}\n  pools: {}\n", name: "dup.yaml")])
    #expect(duplicate.first?.contains("written twice") == true, "\(duplicate)")
}

@Test func deepNestingIsRefused() {
    let flow = "worker: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000) + "\n"
    #expect(errors([values(flow)]).first?.contains("nest deeper than 32 levels") == true)
    var block = ""
    for level in 0..<40 { block += String(repeating: " ", count: level * 2) + "k\(level):\n" }
    #expect(errors([values(block)]).first?.contains("nest deeper than 32 levels") == true)
    let dashes = "worker:\n  pools: " + String(repeating: "- ", count: 2000) + "x\n"
    #expect(errors([values(dashes)]).first?.contains("nest deeper than 32 levels") == true)
}

@Test func anchorsAndAliasesAreRefusedBeforeTheyExpand() {
    var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n"
    for n in 1..<30 { bomb += "a\(n): &a\(n) [*a\(n - 1), *a\(n - 1), *a\(n - 1)]\n" }
    bomb += "? *a29\n: boom\n"
    let start = ContinuousClock.now
    let found = errors([values(bomb, name: "bomb.yaml")])
    #expect(ContinuousClock.now - start < .seconds(2))
    #expect(found.first?.hasPrefix("bomb.yaml:1: error: '&a0' is a YAML anchor") == true, "\(found)")
    let alias = errors([values("worker:\n  pools:\n    a: *x\n")])
    #expect(alias.first?.contains("'*x' is a YAML alias") == true, "\(alias)")
}

@Test func anOversizeFileIsRefused() {
    let big = "worker:\n  pools: {}\n# " + String(repeating: "x", count: 1 << 20) + "\n"
    #expect(errors([values(big)]).first?.contains("larger than 1 MiB") == true)
}
