import Foundation
import Testing

/// Checks Kubernetes manifests against the real schemas, offline: runs Tests/Schemas/validate.py
/// (kubernetes-validate's schemas of the Kubernetes version asked for, unknown fields rejected; KEDA's
/// vendored CRDs for `keda.sh/v1alpha1` ScaledObject and TriggerAuthentication) in Tests/Schemas/.venv,
/// which scripts/test makes.
///
///     let (passed, output) = SchemaValidator.validate(yaml)
///     #expect(passed, "\(output)")
///     SchemaValidator.expectValid(yaml)   // the same, in one line
///
/// `output` is the script's: one line per problem (`doc N (Kind/name): $.path: message`), or
/// `ok: N documents`.
enum SchemaValidator {
    /// The Kubernetes version whose schemas apply when a caller names none.
    static let defaultKubernetesVersion = "1.33"
    /// How long one run may take before it is killed (and fails).
    static let deadline: DispatchTimeInterval = .seconds(60)

    /// The repository's root: this file is Tests/PoolvisorExportTests/SchemaValidator.swift.
    static var packageRoot: String {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)
        return parts.joined(separator: "/")
    }
    static var schemasDirectory: String { packageRoot + "/Tests/Schemas" }
    static var python: String { schemasDirectory + "/.venv/bin/python" }
    static var script: String { schemasDirectory + "/validate.py" }

    /// Validates `yaml` (one or more documents). `passed` is true only when the script exited 0. A missing
    /// venv, a script that could not start or ran past the deadline record an issue at the caller as well.
    static func validate(
        _ yaml: String, kubernetesVersion: String = defaultKubernetesVersion, sourceLocation: SourceLocation = #_sourceLocation
    ) -> (passed: Bool, output: String) {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            let message = "no \(python): run scripts/test once (it makes Tests/Schemas/.venv from Tests/Schemas/requirements.txt)"
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
            return (false, message)
        }
        let scratch = FileManager.default.temporaryDirectory.appendingPathComponent("poolvisor-schemas-\(UUID().uuidString)")
        let input = scratch.appendingPathComponent("manifests.yaml")
        let outputFile = scratch.appendingPathComponent("output.txt")
        defer { try? FileManager.default.removeItem(at: scratch) }
        do {
            try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
            try Data(yaml.utf8).write(to: input)
            try Data().write(to: outputFile)
            let output = try FileHandle(forWritingTo: outputFile)
            defer { try? output.close() }

            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [script, "--kubernetes-version", kubernetesVersion, input.path]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = output
            process.standardError = output
            var environment = ProcessInfo.processInfo.environment
            environment["PYTHONDONTWRITEBYTECODE"] = "1"
            process.environment = environment
            let finished = DispatchSemaphore(value: 0)
            process.terminationHandler = { _ in finished.signal() }
            try process.run()
            if finished.wait(timeout: .now() + deadline) == .timedOut {
                kill(process.processIdentifier, SIGKILL)
                finished.wait()
                let message = "validate.py ran for longer than \(deadline) and was killed"
                Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
                return (false, message + "\n" + ((try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""))
            }
            let text = (try? String(contentsOf: outputFile, encoding: .utf8)) ?? ""
            return (process.terminationReason == .exit && process.terminationStatus == 0, text)
        } catch {
            let message = "could not run \(script): \(error)"
            Issue.record(Comment(rawValue: message), sourceLocation: sourceLocation)
            return (false, message)
        }
    }

    /// Expects `yaml` to validate; the script's output becomes the failure's comment.
    static func expectValid(_ yaml: String, kubernetesVersion: String = defaultKubernetesVersion, sourceLocation: SourceLocation = #_sourceLocation) {
        let (passed, output) = validate(yaml, kubernetesVersion: kubernetesVersion, sourceLocation: sourceLocation)
        #expect(passed, Comment(rawValue: output), sourceLocation: sourceLocation)
    }
}
