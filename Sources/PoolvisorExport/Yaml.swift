import Yams

/// YAML text of `node`, block style, keys in the order given.
func yamlText(_ node: Node) -> String {
    (try? Yams.serialize(node: node, indent: 2, width: -1, allowUnicode: true)) ?? ""
}
