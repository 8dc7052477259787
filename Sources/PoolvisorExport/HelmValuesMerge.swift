/// Values files merged as `helm install -f a.yaml -f b.yaml` merges them: maps deeply, key by key; a later
/// file's value wins; a list is replaced whole, never merged; `null` in a later file deletes the key.
enum HelmValuesMerge {
    /// `files` merged in order, the first as the base.
    static func merge(_ files: [HelmValue]) -> HelmValue? {
        guard var out = files.first else { return nil }
        for overlay in files.dropFirst() { out = merge(out, overlay) }
        return out
    }

    /// `overlay` over `base`. Keys keep the base's order; keys new in `overlay` follow in its order.
    static func merge(_ base: HelmValue, _ overlay: HelmValue) -> HelmValue {
        guard case .map(var entries) = base.kind, case .map(let over) = overlay.kind else { return withoutNulls(overlay) }
        for entry in over {
            let index = entries.firstIndex { $0.key == entry.key }
            if case .null = entry.value.kind {
                if let index { entries.remove(at: index) }
                continue
            }
            if let index {
                entries[index].value = merge(entries[index].value, entry.value)
            } else {
                entries.append(HelmValue.Entry(key: entry.key, value: withoutNulls(entry.value)))
            }
        }
        return HelmValue(kind: .map(entries), origin: base.origin)
    }

    /// A map added by a later file, without the keys it deletes (nothing to delete them from).
    private static func withoutNulls(_ value: HelmValue) -> HelmValue {
        guard case .map(let entries) = value.kind else { return value }
        let kept = entries.compactMap { entry -> HelmValue.Entry? in
            if case .null = entry.value.kind { return nil }
            return HelmValue.Entry(key: entry.key, value: withoutNulls(entry.value))
        }
        return HelmValue(kind: .map(kept), origin: value.origin)
    }
}
