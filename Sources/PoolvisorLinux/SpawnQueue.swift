import PoolvisorCore

/// The workers the reconciler asked for and the daemon has not spawned yet, first asked first out,
/// one per replica: a newer launch for a replica replaces the one waiting. A start or scale-up of
/// thousands is spawned a slice of time per loop turn (`Daemon.spawnSlice`), so the control socket,
/// signals and exits are served between slices.
struct SpawnQueue {
    private var launches: [ReplicaID: WorkerLaunch] = [:]
    private var order: [ReplicaID] = []
    private var head = 0

    var isEmpty: Bool { launches.isEmpty }
    var count: Int { launches.count }

    mutating func push(_ launch: WorkerLaunch) {
        if launches.updateValue(launch, forKey: launch.replica) == nil { order.append(launch.replica) }
    }

    mutating func pop() -> WorkerLaunch? {
        while head < order.count {
            let id = order[head]
            head += 1
            if let launch = launches.removeValue(forKey: id) {
                compact()
                return launch
            }
        }
        compact()
        return nil
    }

    /// Gives back the room taken by launches already popped.
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
