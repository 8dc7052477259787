import Testing

/// The schema validator can fail: a harness that passes everything would prove nothing about the export.
@Suite struct SchemaValidatorTests {
    static let deployment = """
        apiVersion: apps/v1
        kind: Deployment
        metadata:
          name: web
          labels: {app.kubernetes.io/name: web}
        spec:
          replicas: 2
          selector:
            matchLabels: {app.kubernetes.io/name: web}
          template:
            metadata:
              labels: {app.kubernetes.io/name: web}
            spec:
              containers:
                - name: web
                  image: example/web:1
                  args: ["--pool", "web"]
                  resources:
                    requests: {cpu: 100m, memory: 64Mi}
        """

    static let triggerAuthentication = """
        apiVersion: keda.sh/v1alpha1
        kind: TriggerAuthentication
        metadata: {name: jobs-db}
        spec:
          secretTargetRef:
            - parameter: connection
              name: jobs-db
              key: url
        """

    /// A ScaledObject whose `spec` is `spec` (indented by two spaces).
    static func scaledObject(spec: String) -> String {
        """
        apiVersion: keda.sh/v1alpha1
        kind: ScaledObject
        metadata: {name: worker}
        spec:
        \(spec)
        """
    }

    static let scaledObjectSpec = """
          scaleTargetRef: {name: worker}
          minReplicaCount: 0
          maxReplicaCount: 10
          pollingInterval: 15
          triggers:
            - type: postgresql
              metadata:
                query: "SELECT count(*) FROM jobs WHERE state = 'queued'"
                targetQueryValue: "5"
              authenticationRef: {name: jobs-db}
        """

    @Test func kubernetesKindsPass() {
        let yaml = """
            # the export's header comment: an empty document, skipped
            ---
            \(Self.deployment)
            ---
            apiVersion: policy/v1
            kind: PodDisruptionBudget
            metadata: {name: web}
            spec:
              maxUnavailable: 1
              selector:
                matchLabels: {app.kubernetes.io/name: web}
            ---
            apiVersion: autoscaling/v2
            kind: HorizontalPodAutoscaler
            metadata: {name: web}
            spec:
              scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
              minReplicas: 1
              maxReplicas: 5
              metrics:
                - type: Resource
                  resource:
                    name: cpu
                    target: {type: Utilization, averageUtilization: 80}
            ---
            apiVersion: v1
            kind: ConfigMap
            metadata: {name: web-pools}
            data:
              pools.toml: |
                [pool.web]
                command = ["web"]
            """
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(passed, "\(output)")
        #expect(output.contains("ok: 4 documents"), "\(output)")
    }

    @Test func aMisspeltDeploymentFieldFails() {
        let yaml = Self.deployment.replacingOccurrences(of: "  replicas: 2", with: "  replica: 2")
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(!passed)
        #expect(output.contains("doc 1 (Deployment/web): $.spec.replica: unknown field"), "\(output)")
    }

    @Test func aStringForAnIntegerFails() {
        let yaml = Self.deployment.replacingOccurrences(of: "  replicas: 2", with: "  replicas: \"two\"")
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(!passed)
        #expect(output.contains("$.spec.replicas: 'two' is not of type 'integer'"), "\(output)")
    }

    @Test func anUnknownKindFails() {
        let yaml = "apiVersion: v1\nkind: Frobnicator\nmetadata: {name: x}\n"
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(!passed)
        #expect(output.contains("unknown apiVersion/kind"), "\(output)")
    }

    @Test func aKedaScaledObjectAndItsTriggerAuthenticationPass() {
        let yaml = Self.scaledObject(spec: Self.scaledObjectSpec) + "\n---\n" + Self.triggerAuthentication
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(passed, "\(output)")
        #expect(output.contains("ok: 2 documents"), "\(output)")
    }

    @Test func aMisspeltScaledObjectFieldFails() {
        // minReplicas is the HorizontalPodAutoscaler's name; KEDA's is minReplicaCount.
        let spec = Self.scaledObjectSpec.replacingOccurrences(of: "minReplicaCount", with: "minReplicas")
        let (passed, output) = SchemaValidator.validate(Self.scaledObject(spec: spec))
        #expect(!passed)
        #expect(output.contains("doc 1 (ScaledObject/worker): $.spec.minReplicas: unknown field"), "\(output)")
    }

    @Test func aScaledObjectWithoutScaleTargetRefFails() {
        let spec = Self.scaledObjectSpec.replacingOccurrences(of: "  scaleTargetRef: {name: worker}\n", with: "")
        let (passed, output) = SchemaValidator.validate(Self.scaledObject(spec: spec))
        #expect(!passed)
        #expect(output.contains("'scaleTargetRef' is a required property"), "\(output)")
    }

    @Test func theScaledObjectsCELRuleIsChecked() {
        let spec = Self.scaledObjectSpec.replacingOccurrences(of: "minReplicaCount: 0", with: "minReplicaCount: 20")
        let (passed, output) = SchemaValidator.validate(Self.scaledObject(spec: spec))
        #expect(!passed)
        #expect(output.contains("minReplicaCount must be less than or equal to maxReplicaCount"), "\(output)")
    }

    @Test func nothingToValidateFails() {
        let (passed, output) = SchemaValidator.validate("# an export that wrote only its header\n---\n")
        #expect(!passed)
        #expect(output.contains("no documents"), "\(output)")
    }

    @Test func aRepeatedKeyFails() {
        let yaml = Self.deployment.replacingOccurrences(of: "  replicas: 2", with: "  replicas: 2\n  replicas: 3")
        let (passed, output) = SchemaValidator.validate(yaml)
        #expect(!passed)
        #expect(output.contains("duplicate key 'replicas'"), "\(output)")
    }
}
