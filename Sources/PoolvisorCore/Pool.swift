extension Reconciler {
    /// What a pool should be: the pools file's spec, `poolvisor scale`, the autoscaler. Decisions read
    /// it; only the file, commands and the autoscaler change it.
    public struct PoolWant: Sendable, Codable {
        public internal(set) var spec: PoolSpec
        /// Bumped whenever what a worker runs changes (or on `restart`); older workers are replaced.
        public internal(set) var generation = 0
        /// `poolvisor scale`: replicas to run instead of the file's, until the file's count changes.
        public internal(set) var scaledTo: Int?
        /// `[autoscaling]`: the autoscaler's replicas replace the file's and `poolvisor scale`.
        public internal(set) var autoscale: AutoscaleState?
        /// False once the pool is gone from the pools file: it drains, and is forgotten once its last
        /// worker exits.
        public internal(set) var inFile = true

        init(spec: PoolSpec) {
            self.spec = spec
            autoscale = spec.autoscaling.map { AutoscaleState(config: $0, replicas: $0.initialReplicas) }
        }

        /// How many replicas the pool should run now.
        public var replicas: Int { !inFile || !spec.enabled ? 0 : (autoscale?.replicas ?? scaledTo ?? spec.replicas) }
        /// The disruption budget's floor: ready workers a voluntary disruption keeps.
        public var minimumReady: Int { spec.disruptionBudget?.minimumReady(of: replicas) ?? 0 }
    }

    /// A pool as it runs: its slots and its worker processes. Status is built from this.
    public struct Pool: Sendable, Codable {
        public internal(set) var want: PoolWant
        /// The replica slots by index. After a scale-down some are vacant (the idle workers went, not
        /// necessarily the highest); surplus ones stay while a scale-down waits for its budget.
        public internal(set) var replicas: [Replica] = []
        /// Every live worker process of the pool by pid: those holding a slot and the retired ones.
        public internal(set) var workers: [Int32: Worker] = [:]
        /// The workers that left their slot and drain outside it (a subset of `workers`).
        public internal(set) var retired: Set<Int32> = []
        /// Its `depends_on` held once, so it started: it is never held again.
        public internal(set) var released = false
        /// Why it has not started yet (a job or pool it depends on), while it is held.
        public internal(set) var held: String?
        /// What workers of older generations run, while a rolling replacement has some left: an exec
        /// probe runs as its worker does.
        public internal(set) var olderTemplates: [Int: WorkerTemplate] = [:]
        /// The probes of each serving worker, for pools with probes.
        public internal(set) var probing: [Int32: WorkerProbes] = [:]
        public internal(set) var rollout: Rollout?
        /// Slots that are not vacant, and workers that are ready (a ready worker always holds its slot:
        /// a retired one drains). Kept by the two funnels, so that a step towards the desired state needs
        /// no scan of the slots.
        public internal(set) var activeSlots = 0
        public internal(set) var readyWorkers = 0

        init(spec: PoolSpec) { want = PoolWant(spec: spec) }

        public var spec: PoolSpec { want.spec }
        public var generation: Int { want.generation }
        public var scaledTo: Int? { want.scaledTo }
        public var autoscale: AutoscaleState? { want.autoscale }
        public var removed: Bool { !want.inFile }
        /// How many replicas the pool should run now.
        public var desired: Int { want.replicas }
        public var minimumReady: Int { want.minimumReady }

        /// The retired workers, draining outside their slots, by slot.
        public var retiring: [Worker] { retired.compactMap { workers[$0] }.sorted { ($0.replica.index, $0.pid) < ($1.replica.index, $1.pid) } }

        /// The slot at `index` and the worker holding it, together.
        public func view(_ index: Int) -> ReplicaView {
            let slot = replicas[index].state
            return ReplicaView(slot, slot.occupant.flatMap { workers[$0] })
        }
    }

    /// A rolling replacement in progress.
    public struct Rollout: Sendable, Equatable, Codable {
        /// "environment (DATABASE_URL)", "poolvisor restart".
        public var reason: String
        public var startedAt: Instant
        /// Why no further worker is being replaced right now, when that is the case.
        public var waiting: String?
    }
}
