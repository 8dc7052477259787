import ArgumentParser
import PoolvisorCore
import PoolvisorExport
import PoolvisorSystem

/// `poolvisor import`: a pools file from the configuration a team brings along.
struct Import: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Make a pools file from another tool's configuration.",
        subcommands: [ImportHelmValues.self]
    )
}

/// `poolvisor import helm-values values.yaml [-f more.yaml ...]`: the seed chart's `worker` values as a
/// pools file on stdout; warnings and errors on stderr.
struct ImportHelmValues: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "helm-values",
        abstract: "Print a pools file made from the worker section of the seed Helm chart's values.",
        discussion: """
            The files are merged as `helm -f` merges them: maps key by key, later files win, lists are replaced \
            whole, null deletes a key. Keys with no meaning on one host (affinity, nodeSelector, image, …) become \
            comments; unknown keys also a warning. Each envSecretRef becomes an env_file in --env-dir, with a \
            comment saying how to write the secret's keys there. Check the result with `poolvisor check -c FILE`.
            """
    )

    @Argument(help: ArgumentHelp("The Helm values file.", valueName: "values.yaml"))
    var file: String

    @Option(name: [.customShort("f"), .customLong("values")], help: ArgumentHelp("A further values file, merged over the ones before it (repeatable).", valueName: "file"))
    var more: [String] = []

    @Option(name: .customLong("env-dir"), help: ArgumentHelp("Where each envSecretRef's env file goes: DIR/SECRET.env.", valueName: "dir"))
    var envDirectory: String = HelmValuesImport.defaultEnvDirectory

    @Option(help: ArgumentHelp("The Helm release's name: [supervisor] name unless --instance is given.", valueName: "name"))
    var release: String = "poolvisor"

    @Option(help: ArgumentHelp("[supervisor] name (default: the release's name).", valueName: "name"))
    var instance: String?

    @Option(
        help: ArgumentHelp(
            "The worker's command when the values have no worker.command, split on spaces (no shell quoting): \"/usr/bin/python3 -m app.worker\".",
            valueName: "argv"))
    var command: String?

    func run() throws {
        var files: [HelmValuesImport.File] = []
        var unreadable = 0
        for path in [file] + more {
            switch RegularFile.read(path, limit: RegularFile.defaultLimit, what: "a values file") {
            case .success(let text): files.append(HelmValuesImport.File(name: path, text: text))
            case .failure(let why):
                printError("\(Printable.visible(path)): error: cannot read the values file: \(why.message)")
                unreadable += 1
            }
        }
        guard unreadable == 0 else { throw ExitCode(1) }
        let argv = command.map { $0.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init) }
        let options = HelmValuesImport.Options(envDirectory: envDirectory, instance: instance ?? release, command: argv?.isEmpty == true ? nil : argv)
        let output = HelmValuesImport.convert(files, options: options)
        for d in output.diagnostics { printError(d.description) }
        guard let toml = output.toml else {
            let errors = output.diagnostics.errors.count
            printError("\(errors) error\(errors == 1 ? "" : "s"); no pools file written")
            throw ExitCode(1)
        }
        print(toml, terminator: "")
    }
}
