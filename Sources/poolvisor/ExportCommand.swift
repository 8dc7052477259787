import ArgumentParser
import Glibc
import PoolvisorCore
import PoolvisorDaemon
import PoolvisorExport
import PoolvisorLinux

/// `poolvisor export`: the pools file as Kubernetes manifests, the seed chart's values, or a Nomad job.
struct ExportPools: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Render the pools file for Kubernetes (with KEDA), the Helm chart's values, or Nomad.",
        discussion: """
            Reads the pools file but never its env files: no secret value is written. Each env file becomes \
            a Secret referenced by name (a template read on the client for Nomad). What has no equivalent \
            on the target is said pool by pool on stderr and in a comment in the output.
            """
    )

    @Argument(help: ArgumentHelp("kubernetes, helm-values or nomad.", valueName: "target"))
    var target: String

    @OptionGroup var options: ConfigOption

    @Option(help: ArgumentHelp("metadata.namespace (Kubernetes) or the job's namespace (Nomad).", valueName: "name"))
    var namespace: String?

    @Option(help: ArgumentHelp("The container image the workers run from (Kubernetes, Helm values).", valueName: "image"))
    var image: String?

    @Option(name: [.short, .long], help: ArgumentHelp("A directory to write a file per pool into, or - for standard output.", valueName: "dir"))
    var output: String = "-"

    func validate() throws {
        guard Export.Target(rawValue: target) != nil else {
            throw ValidationError("'\(target)' is not an export target: kubernetes, helm-values or nomad")
        }
        if let namespace, !isLabel(namespace) {
            throw ValidationError("--namespace '\(namespace)' is not a Kubernetes namespace name (1–63 lowercase letters, digits and -)")
        }
    }

    func run() throws {
        let result = PoolsFileLoader.load(options.config, parser: .ownBinary, host: ExportHost())
        for d in result.diagnostics { printError(d.description) }
        guard let file = result.file else {
            printError("\(options.config): \(plural(result.diagnostics.errors.count, "error")); nothing exported")
            throw ExitCode(1)
        }
        let rendering = Export.render(file, as: Export.Target(rawValue: target)!, options: .init(namespace: namespace, image: image))
        for warning in rendering.warnings { printError("poolvisor export: warning: \(warning)") }
        if output == "-" {
            writeAll(1, Array(Export.text(of: rendering).utf8))
            return
        }
        if mkdir(output, 0o755) != 0 && errno != EEXIST {
            printError("poolvisor export: cannot create \(output): \(String(cString: strerror(errno)))")
            throw ExitCode(1)
        }
        for exported in rendering.files {
            let path = output + "/" + exported.name
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0o644)
            guard fd >= 0 else {
                printError("poolvisor export: cannot write \(path): \(String(cString: strerror(errno)))")
                throw ExitCode(1)
            }
            writeAll(fd, Array(exported.text.utf8))
            close(fd)
            printError("wrote \(path)")
        }
    }

    private func isLabel(_ s: String) -> Bool {
        !s.isEmpty && s.count <= 63 && s.first != "-" && s.last != "-" && s.allSatisfy { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }
    }
}
