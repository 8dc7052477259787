import PoolvisorCore

/// The replicas the reconciler asked to spawn and the daemon has not spawned yet, first asked first
/// out, each once. A start or scale-up of thousands is spawned a slice of time per loop turn
/// (`Daemon.spawnSlice`), so the control socket, signals and exits are served between slices.
///
/// Only ids wait here: each launch is built when its turn comes (`Reconciler.launch(for:)`), from the
/// pool as it is then, so 10,000 waiting launches (an environment each) never sit in memory at once.
struct SpawnQueue {
    private var waiting: Set<ReplicaID> = []
    private var order: [ReplicaID] = []
    private var head = 0

    var isEmpty: Bool { waiting.isEmpty }
    var count: Int { waiting.count }

    mutating func push(_ id: ReplicaID) {
        if waiting.insert(id).inserted { order.append(id) }
    }

    /// The ids waiting, first asked first.
    var waitingInOrder: [ReplicaID] { order[head...].filter { waiting.contains($0) } }

    mutating func pop() -> ReplicaID? {
        while head < order.count {
            let id = order[head]
            head += 1
            if waiting.remove(id) != nil {
                compact()
                return id
            }
        }
        compact()
        return nil
    }

    /// Gives back the room taken by ids already popped.
    private mutating func compact() {
        if head == order.count {
            order.removeAll(keepingCapacity: order.count <= 4096)
            head = 0
        } else if head > 4096 && head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }
}
