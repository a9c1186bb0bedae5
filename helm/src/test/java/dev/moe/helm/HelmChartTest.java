package dev.moe.helm;

import static dev.moe.helm.Charts.boolValue;
import static dev.moe.helm.Charts.intValue;
import static dev.moe.helm.Charts.render;
import static dev.moe.helm.Charts.template;
import static dev.moe.helm.Charts.value;
import static dev.moe.helm.Charts.yamlValues;
import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.marcnuri.helm.LintResult;
import dev.moe.helm.Charts.Rendering;
import io.fabric8.kubernetes.api.model.ConfigMap;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.ContainerPort;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.PodTemplateSpec;
import io.fabric8.kubernetes.api.model.Probe;
import io.fabric8.kubernetes.api.model.Service;
import io.fabric8.kubernetes.api.model.ServicePort;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicy;
import io.fabric8.kubernetes.api.model.networking.v1.NetworkPolicyIngressRule;
import io.fabric8.kubernetes.api.model.policy.v1.PodDisruptionBudget;
import io.fabric8.kubernetes.api.model.rbac.PolicyRule;
import io.fabric8.kubernetes.api.model.rbac.Role;
import io.fabric8.kubernetes.api.model.rbac.RoleBinding;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Lints and renders helm/moe-serving with the bundled Helm (helm-java) for the default values and every
 * ci/*-values.yaml, parses each rendered document with fabric8 and checks that the objects agree with each other and
 * with what the router and expert services actually do (ports, health services, arguments, discovery RBAC, metrics
 * endpoints and their scraping).
 */
class HelmChartTest {
    static final Path CHART = Charts.CHART;
    static final String RELEASE = Charts.RELEASE;
    static final String NAMESPACE = Charts.NAMESPACE;
    static final int ROUTER_PORT = 9090; // router-service-defaults.properties
    static final int EXPERT_PORT = 9091; // expert-service-defaults.properties
    static final Set<String> SELECTOR_KEYS =
            Set.of("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component");

    static Stream<Path> valuesFiles() throws IOException {
        return Charts.valuesFiles();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void chartLints(Path values, @TempDir Path scratch) throws IOException {
        LintResult result = Charts.lint(values, scratch);
        assertThat(result.isFailed()).as("helm lint --strict with %s: %s", values, result.getMessages()).isFalse();
        assertThat(result.getMessages()).as("helm lint --strict with %s", values)
                .noneMatch(m -> m.contains("[ERROR]") || m.contains("[WARNING]"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void selectorsMatchPodTemplatesAndUseOnlySelectorLabels(Path values) {
        Rendering r = render(values);
        Deployment router = r.one(Deployment.class);
        StatefulSet expert = r.one(StatefulSet.class);
        Map<String, Map<String, String>> podLabels = Map.of(
                "router", router.getSpec().getTemplate().getMetadata().getLabels(),
                "expert", expert.getSpec().getTemplate().getMetadata().getLabels());

        assertSelector(router.getSpec().getSelector().getMatchLabels(), podLabels.get("router"), "router", r);
        assertSelector(expert.getSpec().getSelector().getMatchLabels(), podLabels.get("expert"), "expert", r);
        for (Service service : r.all(Service.class)) {
            String component = service.getMetadata().getLabels().get("app.kubernetes.io/component");
            assertSelector(service.getSpec().getSelector(), podLabels.get(component), component, r);
        }
        for (PodDisruptionBudget pdb : r.all(PodDisruptionBudget.class)) {
            String component = pdb.getMetadata().getLabels().get("app.kubernetes.io/component");
            assertSelector(pdb.getSpec().getSelector().getMatchLabels(), podLabels.get(component), component, r);
        }
        assertThat(r.all(PodDisruptionBudget.class)).hasSize(2);
        assertNetworkPolicies(r, podLabels, values, Map.of());
        // Every object carries the recommended labels.
        for (HasMetadata object : r.objects()) {
            assertThat(object.getMetadata().getLabels()).as("labels of %s in %s", object.getKind() + "/" + object.getMetadata().getName(), r)
                    .containsKeys("app.kubernetes.io/name", "app.kubernetes.io/instance",
                            "app.kubernetes.io/component", "app.kubernetes.io/version",
                            "app.kubernetes.io/managed-by", "helm.sh/chart")
                    .containsEntry("app.kubernetes.io/instance", RELEASE)
                    .containsEntry("app.kubernetes.io/version", "0.1.0");
        }
    }

    /**
     * One ingress NetworkPolicy per component (when networkPolicy.enabled). Expert pods: gRPC only from this release's
     * router pods. Router pods: gRPC from networkPolicy.clientsFrom (no peers = any source). Both: the metrics port
     * (when metrics.enabled) from networkPolicy.metricsFrom. {@code sets} are --set values on top of the file.
     */
    private static void assertNetworkPolicies(Rendering r, Map<String, Map<String, String>> podLabels, Path values,
                                              Map<String, Object> sets) {
        boolean enabled = (boolean) sets.getOrDefault("networkPolicy.enabled", boolValue(values, "networkPolicy.enabled"));
        boolean metrics = (boolean) sets.getOrDefault("metrics.enabled", boolValue(values, "metrics.enabled"));
        assertThat(r.all(NetworkPolicy.class)).as("NetworkPolicies in %s", r).hasSize(enabled ? 2 : 0);
        for (NetworkPolicy policy : r.all(NetworkPolicy.class)) {
            String component = policy.getMetadata().getLabels().get("app.kubernetes.io/component");
            assertThat(component).isIn("router", "expert");
            assertSelector(policy.getSpec().getPodSelector().getMatchLabels(), podLabels.get(component), component, r);
            assertThat(policy.getSpec().getPolicyTypes()).containsExactly("Ingress");
            NetworkPolicyIngressRule grpc = policy.getSpec().getIngress().getFirst();
            assertThat(grpc.getPorts()).singleElement()
                    .satisfies(p -> assertThat(p.getPort().getStrVal()).isEqualTo("grpc"));
            if ("expert".equals(component)) {
                // gRPC: only this release's router pods.
                assertThat(grpc.getFrom()).hasSize(1);
                assertSelector(grpc.getFrom().getFirst().getPodSelector().getMatchLabels(), podLabels.get("router"),
                        "router", r);
                assertThat(grpc.getFrom().getFirst().getNamespaceSelector()).isNull();
            } else {
                // gRPC: the clients, networkPolicy.clientsFrom.
                assertPeers(grpc, peers(values, sets, "networkPolicy.clientsFrom"));
            }
            // metrics: networkPolicy.metricsFrom, and no peers at all (= any source) when that is empty.
            List<NetworkPolicyIngressRule> metricsRules = policy.getSpec().getIngress().stream()
                    .filter(rule -> rule.getPorts().stream().anyMatch(p -> "metrics".equals(p.getPort().getStrVal())))
                    .toList();
            if (!metrics) {
                assertThat(metricsRules).isEmpty();
                assertThat(policy.getSpec().getIngress()).hasSize(1);
                continue;
            }
            assertThat(metricsRules).singleElement().satisfies(rule -> {
                assertThat(rule.getPorts()).singleElement()
                        .satisfies(p -> assertThat(p.getPort().getStrVal()).isEqualTo("metrics"));
                assertPeers(rule, peers(values, sets, "networkPolicy.metricsFrom"));
            });
            assertThat(policy.getSpec().getIngress()).hasSize(2);
        }
    }

    private static List<?> peers(Path values, Map<String, Object> sets, String key) {
        return (List<?>) (sets.containsKey(key) ? sets.get(key) : Charts.raw(values, key));
    }

    private static void assertPeers(NetworkPolicyIngressRule rule, List<?> expected) {
        if (expected.isEmpty()) {
            assertThat(rule.getFrom()).isNullOrEmpty();
        } else {
            assertThat(Serialization.jsonMapper().convertValue(rule.getFrom(), List.class)).isEqualTo(expected);
        }
    }

    private static void assertSelector(Map<String, String> selector, Map<String, String> podLabels, String component,
                                       Rendering r) {
        assertThat(selector).as("selector of %s in %s", component, r).isNotEmpty();
        assertThat(selector.keySet()).as("selector keys of %s in %s", component, r).isEqualTo(SELECTOR_KEYS);
        assertThat(selector).containsEntry("app.kubernetes.io/component", component)
                .containsEntry("app.kubernetes.io/instance", RELEASE);
        assertThat(podLabels).as("pod labels of %s in %s", component, r).containsAllEntriesOf(selector);
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void portsAndProbesMatchWhatTheServicesListenOn(Path values) {
        Rendering r = render(values);
        Container router = r.one(Deployment.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        Container expert = r.one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst();

        assertThat(grpcPort(router)).isEqualTo(ROUTER_PORT);
        assertThat(grpcPort(expert)).isEqualTo(EXPERT_PORT);
        assertThat(router.getArgs()).contains("--spring.grpc.server.port=" + ROUTER_PORT);
        assertThat(expert.getArgs()).contains("--spring.grpc.server.port=" + EXPERT_PORT);

        // Expert: native gRPC probes on the server's port, overall health ("").
        for (Probe probe : List.of(expert.getReadinessProbe(), expert.getLivenessProbe(), expert.getStartupProbe())) {
            assertThat(probe.getGrpc()).isNotNull();
            assertThat(probe.getGrpc().getPort()).isEqualTo(EXPERT_PORT);
            assertThat(probe.getGrpc().getService()).isEmpty();
        }
        // Router: Ready only when RouterService is SERVING (every expert has a pod); liveness must not depend on it.
        assertThat(router.getReadinessProbe().getGrpc().getPort()).isEqualTo(ROUTER_PORT);
        assertThat(router.getReadinessProbe().getGrpc().getService()).isEqualTo("moe.router.v1.RouterService");
        assertThat(router.getLivenessProbe().getGrpc()).isNull();
        assertThat(router.getLivenessProbe().getTcpSocket().getPort().getStrVal()).isEqualTo("grpc");

        // The router's client-facing Service: gRPC only, whatever its type (it may be a NodePort or LoadBalancer).
        Service routerService = service(r, "router", "grpc");
        assertThat(routerService.getMetadata().getName()).isEqualTo(r.one(Deployment.class).getMetadata().getName());
        assertThat(routerService.getSpec().getPorts()).singleElement().satisfies(p -> {
            assertThat(p.getName()).isEqualTo("grpc");
            assertThat(p.getPort()).isEqualTo(ROUTER_PORT);
            assertThat(p.getTargetPort().getStrVal()).isEqualTo("grpc");
        });
        Service expertService = service(r, "expert", "headless");
        assertThat(expertService.getSpec().getClusterIP()).isEqualTo("None");
        assertThat(expertService.getSpec().getPorts()).anySatisfy(p -> {
            assertThat(p.getName()).isEqualTo("grpc");
            assertThat(p.getPort()).isEqualTo(EXPERT_PORT);
            assertThat(p.getTargetPort().getStrVal()).isEqualTo("grpc");
        });
        assertThat(r.one(StatefulSet.class).getSpec().getServiceName())
                .isEqualTo(expertService.getMetadata().getName());

        // Metrics: the actuator's HTTP server on a port named metrics of container and Service, or no HTTP server.
        boolean metrics = boolValue(values, "metrics.enabled");
        assertThat(r.all(Service.class)).hasSize(metrics ? 3 : 2);
        for (String component : List.of("router", "expert")) {
            Container c = "router".equals(component) ? router : expert;
            Service service = "router".equals(component) ? routerService : expertService;
            if ("router".equals(component) && metrics) {
                // The router's metrics port is on a Service of its own, in-cluster only.
                service = service(r, "router", "metrics");
                assertThat(service.getMetadata().getName())
                        .isEqualTo(r.one(Deployment.class).getMetadata().getName() + "-metrics");
                assertThat(service.getSpec().getType()).isEqualTo("ClusterIP");
                assertThat(service.getSpec().getClusterIP()).isEqualTo("None");
                assertThat(service.getSpec().getPublishNotReadyAddresses()).isTrue();
                assertThat(service.getSpec().getPorts()).singleElement()
                        .satisfies(p -> assertThat(p.getName()).isEqualTo("metrics"));
            }
            Optional<ContainerPort> containerPort = c.getPorts().stream()
                    .filter(p -> "metrics".equals(p.getName())).findFirst();
            Optional<ServicePort> servicePort = service.getSpec().getPorts().stream()
                    .filter(p -> "metrics".equals(p.getName())).findFirst();
            if (!metrics) {
                assertThat(c.getArgs()).contains("--server.port=-1");
                assertThat(containerPort).isEmpty();
                assertThat(servicePort).isEmpty();
                continue;
            }
            int port = intValue(values, "metrics." + component + ".port");
            assertThat(port).isNotEqualTo(grpcPort(c));
            assertThat(c.getArgs()).contains("--server.port=" + port)
                    .filteredOn(a -> a.startsWith("--server.port=")).hasSize(1);
            assertThat(containerPort).get().satisfies(p -> {
                assertThat(p.getContainerPort()).isEqualTo(port);
                assertThat(p.getProtocol()).isEqualTo("TCP");
            });
            assertThat(servicePort).get().satisfies(p -> {
                assertThat(p.getPort()).isEqualTo(port);
                assertThat(p.getTargetPort().getStrVal()).isEqualTo("metrics");
            });
        }
        // Every named targetPort and probe port exists on the selected container.
        for (Service service : r.all(Service.class)) {
            Container c = "router".equals(service.getSpec().getSelector().get("app.kubernetes.io/component"))
                    ? router : expert;
            Set<String> names = c.getPorts().stream().map(ContainerPort::getName).collect(Collectors.toSet());
            assertThat(service.getSpec().getPorts()).allSatisfy(p -> assertThat(names).contains(p.getTargetPort().getStrVal()));
        }
        // JVM flags: heap, direct memory and the Vector API in the JVM's accepted "=" form.
        for (Container c : List.of(router, expert)) {
            String opts = env(c, "JAVA_TOOL_OPTIONS");
            assertThat(opts).contains("--add-modules=jdk.incubator.vector").containsPattern("-Xmx\\d+[kKmMgG]")
                    .containsPattern("-XX:MaxDirectMemorySize=\\d+[kKmMgG]");
            java.util.regex.Matcher xmx = java.util.regex.Pattern.compile("-Xmx(\\S+)").matcher(opts);
            assertThat(xmx.find()).isTrue();
            assertThat(opts).as("a fixed heap").contains("-Xms" + xmx.group(1) + " ");
            assertThat(c.getSecurityContext().getReadOnlyRootFilesystem()).isTrue();
            assertThat(c.getVolumeMounts()).anySatisfy(m -> assertThat(m.getMountPath()).isEqualTo("/tmp"));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void expertShardsAreAllCoveredAndTheRouterWatchesThem(Path values) throws IOException {
        Rendering r = render(values);
        int shards = intValue(values, "expert.shards");
        int replicasPerShard = intValue(values, "expert.replicasPerShard");
        StatefulSet sts = r.one(StatefulSet.class);
        assertThat(sts.getSpec().getReplicas()).isEqualTo(shards * replicasPerShard);
        assertThat(sts.getSpec().getPodManagementPolicy()).isEqualTo("Parallel");

        Container expert = sts.getSpec().getTemplate().getSpec().getContainers().getFirst();
        assertThat(expert.getArgs()).contains("--moe.expert.num-servers=" + shards,
                "--moe.expert.pod-index=$(POD_INDEX)");
        assertThat(expert.getEnv()).anySatisfy(e -> {
            assertThat(e.getName()).isEqualTo("POD_INDEX");
            assertThat(e.getValueFrom().getFieldRef().getFieldPath())
                    .isEqualTo("metadata.labels['apps.kubernetes.io/pod-index']");
        });
        // What ExpertServerProperties does with these: shard = podIndex mod numServers; every shard gets
        // replicasPerShard pods.
        int[] podsPerShard = new int[shards];
        for (int podIndex = 0; podIndex < sts.getSpec().getReplicas(); podIndex++) {
            podsPerShard[podIndex % shards]++;
        }
        assertThat(podsPerShard).containsOnly(replicasPerShard);

        // The router watches exactly the expert pods of this release and namespace.
        Container router = r.one(Deployment.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        assertThat(router.getArgs()).contains("--moe.router.kubernetes.enabled=true",
                "--moe.router.kubernetes.namespace=" + NAMESPACE, "--moe.router.kubernetes.port=" + EXPERT_PORT);
        String selector = arg(router, "--moe.router.kubernetes.label-selector=");
        Map<String, String> selected = Arrays.stream(selector.split(","))
                .map(kv -> kv.split("=", 2)).collect(Collectors.toMap(kv -> kv[0], kv -> kv[1]));
        assertThat(selected).isEqualTo(sts.getSpec().getSelector().getMatchLabels());
        assertThat(router.getArgs()).anySatisfy(a -> assertThat(a).startsWith("--moe.router.model=/"));
        assertThat(arg(router, "--moe.router.model=")).isEqualTo(arg(expert, "--moe.expert.model="));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void routerMayOnlyReadPods(Path values) {
        Rendering r = render(values);
        Role role = r.one(Role.class);
        assertThat(role.getMetadata().getNamespace()).isEqualTo(NAMESPACE);
        assertThat(role.getRules()).singleElement().satisfies((PolicyRule rule) -> {
            assertThat(rule.getApiGroups()).containsExactly("");
            assertThat(rule.getResources()).containsExactly("pods");
            assertThat(rule.getVerbs()).containsExactlyInAnyOrder("get", "list", "watch");
            assertThat(rule.getResourceNames()).isNullOrEmpty();
        });
        RoleBinding binding = r.one(RoleBinding.class);
        assertThat(binding.getRoleRef().getName()).isEqualTo(role.getMetadata().getName());
        String serviceAccount = r.one(Deployment.class).getSpec().getTemplate().getSpec().getServiceAccountName();
        assertThat(binding.getSubjects()).singleElement().satisfies(s -> {
            assertThat(s.getKind()).isEqualTo("ServiceAccount");
            assertThat(s.getName()).isEqualTo(serviceAccount);
            assertThat(s.getNamespace()).isEqualTo(NAMESPACE);
        });
        assertThat(r.all(io.fabric8.kubernetes.api.model.ServiceAccount.class))
                .singleElement().satisfies(sa -> assertThat(sa.getMetadata().getName()).isEqualTo(serviceAccount));
        assertThat(r.all(io.fabric8.kubernetes.api.model.rbac.ClusterRole.class)).isEmpty();
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void dashboardsAreValidJsonWithTheSidecarLabel(Path values) throws IOException {
        Rendering r = render(values);
        boolean enabled = boolValue(values, "dashboards.enabled");
        List<ConfigMap> dashboards = r.all(ConfigMap.class).stream()
                .filter(c -> "dashboards".equals(c.getMetadata().getLabels().get("app.kubernetes.io/component")))
                .toList();
        if (!enabled) {
            assertThat(dashboards).isEmpty();
            return;
        }
        long files;
        try (Stream<Path> json = Files.list(CHART.resolve("dashboards"))) {
            files = json.filter(p -> p.toString().endsWith(".json")).count();
        }
        assertThat(dashboards).hasSize((int) files).isNotEmpty();
        for (ConfigMap cm : dashboards) {
            assertThat(cm.getMetadata().getLabels()).containsEntry("grafana_dashboard", "1");
            assertThat(cm.getData()).hasSize(1);
            String json = cm.getData().values().iterator().next();
            @SuppressWarnings("unchecked")
            Map<String, Object> dashboard = Serialization.jsonMapper().readValue(json, Map.class);
            assertThat(dashboard).containsKeys("uid", "title", "panels", "templating");
            assertThat(cm.getMetadata().getNamespace())
                    .isEqualTo(value(values, "dashboards.namespace").isEmpty() ? NAMESPACE
                            : value(values, "dashboards.namespace"));
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void serviceMonitorsScrapeTheNamedMetricsPortOfEachComponent(Path values) {
        Rendering r = render(values);
        List<GenericKubernetesResource> monitors = r.custom("ServiceMonitor");
        if (!boolValue(values, "serviceMonitor.enabled") || !boolValue(values, "metrics.enabled")) {
            assertThat(monitors).isEmpty();
            return;
        }
        assertThat(monitors).hasSize(2);
        Map<String, String> additional = yamlValues(values).entrySet().stream()
                .filter(e -> e.getKey().startsWith("serviceMonitor.additionalLabels."))
                .collect(Collectors.toMap(e -> e.getKey().substring("serviceMonitor.additionalLabels.".length()),
                        Map.Entry::getValue));
        for (String component : List.of("router", "expert")) {
            GenericKubernetesResource monitor = monitors.stream().filter(m ->
                    component.equals(m.getMetadata().getLabels().get("app.kubernetes.io/component"))).findFirst()
                    .orElseThrow();
            assertThat(monitor.getApiVersion()).isEqualTo("monitoring.coreos.com/v1");
            assertThat(monitor.getMetadata().getNamespace()).isEqualTo(NAMESPACE);
            assertThat(monitor.getMetadata().getLabels()).containsAllEntriesOf(additional);
            // The router's metrics Service, never its client-facing gRPC Service; the experts' headless Service.
            Service service = service(r, component, "router".equals(component) ? "metrics" : "headless");
            assertThat(monitor.<List<String>>get("spec", "namespaceSelector", "matchNames")).containsExactly(NAMESPACE);
            Map<String, String> selector = monitor.get("spec", "selector", "matchLabels");
            assertThat(service.getMetadata().getLabels()).containsAllEntriesOf(selector);
            assertThat(r.all(Service.class)).filteredOn(s -> s.getMetadata().getLabels().entrySet()
                    .containsAll(selector.entrySet())).containsExactly(service);
            assertThat(monitor.<String>get("spec", "jobLabel")).isEqualTo(value(values, "serviceMonitor.jobLabel"));
            List<Map<String, Object>> endpoints = monitor.get("spec", "endpoints");
            assertThat(endpoints).singleElement().satisfies(e -> {
                assertThat(e).containsEntry("port", "metrics").containsEntry("path", value(values, "metrics.path"));
                Optional.ofNullable(yamlValues(values).get("serviceMonitor.interval")).filter(i -> !i.isEmpty())
                        .ifPresent(i -> assertThat(e).containsEntry("interval", i));
            });
            assertThat(service.getSpec().getPorts()).anySatisfy(p -> {
                assertThat(p.getName()).isEqualTo("metrics");
                assertThat(p.getPort()).isEqualTo(intValue(values, "metrics." + component + ".port"));
            });
        }
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("valuesFiles")
    void metricsSettingsBecomeServiceArguments(Path values) {
        Rendering r = render(values);
        PodTemplateSpec routerPod = r.one(Deployment.class).getSpec().getTemplate();
        Container router = routerPod.getSpec().getContainers().getFirst();
        Container expert = r.one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        String layerTag = value(values, "metrics.layerTag");
        assertThat(layerTag).isIn("true", "false");
        assertThat(arg(router, "--moe.router.metrics.layer-tag=")).isEqualTo(layerTag);
        assertThat(arg(expert, "--moe.expert.metrics.layer-tag=")).isEqualTo(layerTag);
        assertThat(arg(router, "--moe.router.metrics.window-tokens="))
                .isEqualTo(Integer.toString(intValue(values, "metrics.windowTokens")));

        String reference = value(values, "metrics.driftReference");
        if (reference.isEmpty()) {
            assertThat(router.getArgs()).noneMatch(a -> a.startsWith("--moe.router.metrics.drift-reference"));
            assertThat(routerPod.getSpec().getVolumes()).noneMatch(v -> "routing-reference".equals(v.getName()));
            return;
        }
        String file = arg(router, "--moe.router.metrics.drift-reference=");
        assertThat(file).isEqualTo("/etc/moe/routing-reference/routing-reference.json");
        assertThat(router.getVolumeMounts()).anySatisfy(m -> {
            assertThat(m.getName()).isEqualTo("routing-reference");
            assertThat(m.getReadOnly()).isTrue();
            assertThat(file).startsWith(m.getMountPath() + "/");
            assertThat(routerPod.getSpec().getVolumes()).anySatisfy(v -> {
                assertThat(v.getName()).isEqualTo("routing-reference");
                assertThat(v.getConfigMap().getName()).isEqualTo(reference);
                assertThat(v.getConfigMap().getItems()).singleElement().satisfies(item -> {
                    assertThat(item.getKey()).isEqualTo("routing-reference.json");
                    assertThat(m.getMountPath() + "/" + item.getPath()).isEqualTo(file);
                });
            });
        });
    }

    @Test
    void metricsPortMustDifferFromTheGrpcPort() {
        assertThatThrownBy(() -> template(null, Map.of("metrics.router.port", ROUTER_PORT)))
                .hasMessageContaining("metrics.router.port must differ from router.grpcPort");
        assertThatThrownBy(() -> template(null, Map.of("metrics.expert.port", EXPERT_PORT)))
                .hasMessageContaining("metrics.expert.port must differ from expert.grpcPort");
        // Disabled metrics never bind the port, so the values do not matter then.
        assertThat(template(null, Map.of("metrics.enabled", false, "metrics.router.port", ROUTER_PORT)))
                .contains("--server.port=-1");
    }

    /**
     * The router Service may face the outside (NodePort, LoadBalancer): the actuator (/actuator/*) must never be on it.
     * Its metrics port is on the ClusterIP Service the ServiceMonitor scrapes, and the router's NetworkPolicy opens it
     * to networkPolicy.metricsFrom only while gRPC stays open to the clients.
     */
    @Test
    void routerMetricsAreNeverExposedWithTheClientFacingService(@TempDir Path dir) throws IOException {
        for (String type : List.of("LoadBalancer", "NodePort")) {
            Map<String, Object> sets = Map.of("router.service.type", type, "serviceMonitor.enabled", true);
            Rendering r = render(null, sets);
            Service external = service(r, "router", "grpc");
            assertThat(external.getSpec().getType()).isEqualTo(type);
            assertThat(external.getSpec().getPorts()).extracting(ServicePort::getName).containsExactly("grpc");
            Service metrics = service(r, "router", "metrics");
            assertThat(metrics.getSpec().getType()).isEqualTo("ClusterIP");
            assertThat(metrics.getSpec().getPorts()).extracting(ServicePort::getName).containsExactly("metrics");
            // Only ClusterIP Services carry a metrics port.
            assertThat(r.all(Service.class)).filteredOn(s -> s.getSpec().getPorts().stream()
                    .anyMatch(p -> "metrics".equals(p.getName())))
                    .allSatisfy(s -> assertThat(s.getSpec().getType()).isIn(null, "ClusterIP")).hasSize(2);
            Map<String, String> routerMonitor = r.custom("ServiceMonitor").stream()
                    .filter(m -> "router".equals(m.getMetadata().getLabels().get("app.kubernetes.io/component")))
                    .findFirst().orElseThrow().get("spec", "selector", "matchLabels");
            assertThat(external.getMetadata().getLabels().entrySet()).doesNotContainAnyElementsOf(
                    Map.of("moe-serving/service", routerMonitor.get("moe-serving/service")).entrySet());
            assertThat(metrics.getMetadata().getLabels()).containsAllEntriesOf(routerMonitor);
        }
        // NetworkPolicies with peers for metrics and clients, and without metrics (only gRPC rules then). Lists go
        // through a values file (--set would make them strings).
        String peers = """
                networkPolicy:
                  metricsFrom:
                    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: monitoring}}
                  clientsFrom:
                    - podSelector: {matchLabels: {role: llm-frontend}}
                    - ipBlock: {cidr: 10.20.0.0/16}
                """;
        Path restricted = Files.writeString(dir.resolve("restricted-values.yaml"), peers);
        Path noMetrics = Files.writeString(dir.resolve("no-metrics-values.yaml"), peers + "metrics:\n  enabled: false\n");
        for (Path values : List.of(restricted, noMetrics)) {
            Rendering r = render(values);
            Map<String, Map<String, String>> podLabels = Map.of(
                    "router", r.one(Deployment.class).getSpec().getTemplate().getMetadata().getLabels(),
                    "expert", r.one(StatefulSet.class).getSpec().getTemplate().getMetadata().getLabels());
            assertNetworkPolicies(r, podLabels, values, Map.of());
            assertThat(r.all(NetworkPolicy.class)).allSatisfy(p -> assertThat(p.getSpec().getIngress())
                    .allSatisfy(rule -> assertThat(rule.getFrom()).isNotEmpty()));
        }
        // Extra ingress rules go to their component's policy only.
        Rendering extra = render(Files.writeString(dir.resolve("extra-values.yaml"), """
                networkPolicy:
                  extraRouterIngress:
                    - ports: [{port: 9999, protocol: TCP}]
                """));
        NetworkPolicy routerPolicy = extra.all(NetworkPolicy.class).stream().filter(p ->
                "router".equals(p.getMetadata().getLabels().get("app.kubernetes.io/component"))).findFirst().orElseThrow();
        assertThat(routerPolicy.getSpec().getIngress()).hasSize(3)
                .last().satisfies(rule -> assertThat(rule.getPorts().getFirst().getPort().getIntVal()).isEqualTo(9999));
        assertThat(extra.all(NetworkPolicy.class)).filteredOn(p -> p != routerPolicy)
                .singleElement().satisfies(p -> assertThat(p.getSpec().getIngress()).hasSize(2));
    }

    /** metrics.port was replaced by metrics.router.port / metrics.expert.port: an upgrade setting it is told so. */
    @Test
    void removedMetricsPortFailsWithAMigrationMessage() {
        for (Object port : List.of(8080, 9100)) {
            assertThatThrownBy(() -> template(null, Map.of("metrics.port", port)))
                    .hasMessageContaining("metrics.port (" + port + ") was removed")
                    .hasMessageContaining("metrics.router.port").hasMessageContaining("metrics.expert.port")
                    .hasMessageNotContaining("schema");
        }
        // Also with metrics disabled: the value is stale either way.
        assertThatThrownBy(() -> template(null, Map.of("metrics.port", 8080, "metrics.enabled", false)))
                .hasMessageContaining("metrics.port (8080) was removed");
        // Unset with null, as the message suggests, it is ignored.
        assertThat(template(null, Map.of("metrics.port", "null"))).contains("--server.port=8080", "--server.port=8081");
        // Without it, the two ports render.
        Rendering r = render(null, Map.of("metrics.router.port", 9100, "metrics.expert.port", 9101));
        assertThat(r.one(Deployment.class).getSpec().getTemplate().getSpec().getContainers().getFirst().getArgs())
                .contains("--server.port=9100");
        assertThat(r.one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst().getArgs())
                .contains("--server.port=9101");
    }

    /** Expert pods back their heap (the weights) with transparent huge pages unless told not to; the router never. */
    @Test
    void expertHeapsUseTransparentHugePagesByDefault() {
        Rendering r = render(CHART.resolve("ci/default-values.yaml"));
        Container expert = r.one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        Container router = r.one(Deployment.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        assertThat(env(expert, "JAVA_TOOL_OPTIONS")).contains(" -XX:+UseTransparentHugePages");
        assertThat(env(router, "JAVA_TOOL_OPTIONS")).doesNotContain("UseTransparentHugePages");

        Container off = render(CHART.resolve("ci/default-values.yaml"), Map.of("expert.jvm.transparentHugePages", false))
                .one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        assertThat(env(off, "JAVA_TOOL_OPTIONS")).doesNotContain("UseTransparentHugePages");
    }

    /** An empty expert.layout leaves the choice to the server (by weight type and the thresholds' target sparsity). */
    @Test
    void layoutIsPassedOnlyWhenSet() {
        Container expert = render(CHART.resolve("ci/default-values.yaml")).one(StatefulSet.class).getSpec()
                .getTemplate().getSpec().getContainers().getFirst();
        assertThat(expert.getArgs()).noneMatch(a -> a.startsWith("--moe.expert.layout"));
        assertThat(expert.getArgs()).contains("--moe.expert.weights=BF16");
    }

    @Test
    void hpaReplacesFixedRouterReplicas() {
        Rendering r = render(CHART.resolve("ci/replicas-values.yaml"));
        assertThat(r.one(Deployment.class).getSpec().getReplicas()).isNull();
        assertThat(r.objects()).anySatisfy(o -> assertThat(o.getKind()).isEqualTo("HorizontalPodAutoscaler"));
        Container expert = r.one(StatefulSet.class).getSpec().getTemplate().getSpec().getContainers().getFirst();
        assertThat(expert.getArgs()).contains("--moe.expert.weights=INT8", "--moe.expert.layout=ROWS",
                "--moe.expert.placement=STRIDED",
                "--moe.expert.sparsity=/etc/moe/sparsity/scap.json", "--moe.expert.sparse-crossover=0.15",
                "--moe.expert.kernel-threads=8");
    }

    @Test
    void downloadValuesFillTheModelVolumeWithAnInitContainer() {
        Rendering r = render(CHART.resolve("ci/download-values.yaml"));
        for (PodTemplateSpec pod : List.of(r.one(Deployment.class).getSpec().getTemplate(),
                r.one(StatefulSet.class).getSpec().getTemplate())) {
            assertThat(pod.getSpec().getVolumes()).anySatisfy(v -> {
                assertThat(v.getName()).isEqualTo("model");
                assertThat(v.getEmptyDir()).isNotNull();
            });
            assertThat(pod.getSpec().getInitContainers()).singleElement().satisfies(c ->
                    assertThat(c.getVolumeMounts()).anySatisfy(m -> assertThat(m.getName()).isEqualTo("model")));
        }
    }

    @ParameterizedTest(name = "{0}={1}")
    @MethodSource("badValues")
    void schemaRejectsBadValues(String key, Object value) {
        assertThatThrownBy(() -> template(null, Map.of(key, value)))
                .hasMessageContaining("values don't meet the specifications of the schema");
    }

    static Stream<Object[]> badValues() {
        return Stream.of(new Object[] {"expert.shards", 0}, new Object[] {"expert.shards", "two"},
                new Object[] {"expert.replicasPerShard", -1}, new Object[] {"expert.weights", "FP16"},
                new Object[] {"expert.layout", "DIAGONAL"},
                new Object[] {"model.source", "s3"}, new Object[] {"router.grpcPort", 70000},
                new Object[] {"metrics.router.port", 0}, new Object[] {"metrics.expert.port", "http"},
                new Object[] {"metrics.windowTokens", 0}, new Object[] {"metrics.layerTag", "yes"},
                new Object[] {"metrics.driftReference", "Not_A_Name"},
                new Object[] {"prometheusRule.selector", "x=\"1\"} or up{y=\"2\""},
                new Object[] {"prometheusRule.rules.lowBalancedness.threshold", 2},
                new Object[] {"prometheusRule.rules.forwardErrors.for", "5 minutes"},
                new Object[] {"prometheusRule.rules.routingDrift.treshold", 0.3},
                new Object[] {"prometheusRule.rules.lowBalancedness.trafficWindow", "5 minutes"},
                new Object[] {"prometheusRule.rules.forwardErrors.codes", "UNAVAILBLE"},
                new Object[] {"prometheusRule.rules.forwardErrors.codes", "OK|UNAVAILABLE"},
                new Object[] {"prometheusRule.rules.forwardErrors.codes", "UNAVAILABLE\"} or vector(1) or x{y=\""},
                new Object[] {"prometheusRule.rules.forwardErrors.codes", ".*"},
                new Object[] {"prometheusRule.rules.targetDown.lookback", ""},
                new Object[] {"prometheusRule.rules.routerMetricsAbsent.threshold", 0},
                new Object[] {"prometheusRule.rules.forwardLatency.quantile", 1},
                new Object[] {"prometheusRule.rules.forwardLatency.threshold", -1},
                new Object[] {"prometheusRule.rules.expertServerSaturated.window", "5"},
                new Object[] {"prometheusRule.rules.expertServerSaturated.severity", ""},
                new Object[] {"networkPolicy.clientsFrom", "any"});
    }

    /** The Service of a component with the given moe-serving/service label (grpc, metrics, headless). */
    private static Service service(Rendering r, String component, String kind) {
        List<Service> found = r.all(Service.class).stream()
                .filter(s -> component.equals(s.getSpec().getSelector().get("app.kubernetes.io/component")))
                .filter(s -> kind.equals(s.getMetadata().getLabels().get("moe-serving/service"))).toList();
        assertThat(found).as("%s Service of the %s in %s", kind, component, r).hasSize(1);
        return found.getFirst();
    }

    private static int grpcPort(Container c) {
        return c.getPorts().stream().filter(p -> "grpc".equals(p.getName())).findFirst().orElseThrow()
                .getContainerPort();
    }

    private static String env(Container c, String name) {
        return c.getEnv().stream().filter(e -> name.equals(e.getName())).findFirst().orElseThrow().getValue();
    }

    private static String arg(Container c, String prefix) {
        Optional<String> arg = c.getArgs().stream().filter(a -> a.startsWith(prefix)).findFirst();
        assertThat(arg).as("argument %s", prefix).isPresent();
        return arg.get().substring(prefix.length());
    }
}
