package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.checkpoint.SyntheticCheckpoint.Spec;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.router.v1.DescribeModelRequest;
import dev.moe.proto.router.v1.ExpertServerInfo;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.discovery.ExpertDirectory;
import io.fabric8.kubernetes.api.model.Container;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.api.model.apps.Deployment;
import io.fabric8.kubernetes.api.model.apps.StatefulSet;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import io.grpc.ManagedChannel;
import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * The Helm chart's rendered pod specs drive the real services: the router starts with the arguments the chart gives
 * its Deployment, each expert server with the arguments of the StatefulSet's pod template (its ordinal as the pod
 * index), and the mock API server holds pods built from that template. If chart and code disagree on labels,
 * selectors, port names or argument names, the router finds no experts and this test fails.
 */
class ChartDrivenDiscoveryTest {
    private static final String NAMESPACE = "moe-test";

    @Test
    void routerFindsExpertPodsBuiltFromTheChart(@TempDir Path dir) throws Exception {
        Spec spec = new Spec(ModelFamily.QWEN3_MOE, 32, 2, 6, 2, 16, 0, 1, 1, true, DType.F32, 1, 9);
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, spec, SyntheticCheckpoint.SILENT);
        List<HasMetadata> objects = render();
        Deployment routerDeployment = only(objects, Deployment.class);
        StatefulSet experts = only(objects, StatefulSet.class);
        int shards = experts.getSpec().getReplicas();
        assertThat(shards).isEqualTo(3);
        Container expertContainer = experts.getSpec().getTemplate().getSpec().getContainers().getFirst();
        Container routerContainer = routerDeployment.getSpec().getTemplate().getSpec().getContainers().getFirst();

        KubernetesMockServer server = new KubernetesMockServer(new Context(), new MockWebServer(), new HashMap<>(),
                new KubernetesCrudDispatcher(), false);
        server.init(InetAddress.getLoopbackAddress(), 0);
        List<EmbeddedCluster.Service> started = new ArrayList<>();
        try (KubernetesClient client = server.createClient()) {
            for (int ordinal = 0; ordinal < shards; ordinal++) {
                String host = "127.0.0." + (10 + ordinal);
                Map<String, Object> args = springArgs(expertContainer.getArgs(), Map.of("POD_INDEX",
                        Integer.toString(ordinal), "POD_NAME", experts.getMetadata().getName() + "-" + ordinal));
                args.put("moe.expert.model", model.toString()); // the chart's mount path, here a local folder
                args.put("spring.grpc.server.port", 0);
                // The chart's metrics port; any free one here, the pods of this test share a machine.
                assertThat(args).containsEntry("server.port", "8081");
                args.put("server.port", 0);
                args.put("logging.level.root", "WARN");
                EmbeddedCluster.Service expert = EmbeddedCluster.startExpert(model, host, args);
                started.add(expert);
                client.pods().inNamespace(NAMESPACE).resource(pod(experts, ordinal, expert.address())).create();
            }
            Map<String, Object> routerArgs = springArgs(routerContainer.getArgs(), Map.of());
            assertThat(routerArgs).containsEntry("moe.router.kubernetes.enabled", "true")
                    .containsEntry("moe.router.kubernetes.namespace", NAMESPACE);
            routerArgs.put("moe.router.model", model.toString());
            routerArgs.put("moe.router.kubernetes.master-url", server.url("/"));
            routerArgs.put("spring.grpc.server.port", 0);
            assertThat(routerArgs).containsEntry("server.port", "8080");
            routerArgs.put("server.port", 0);
            routerArgs.put("logging.level.root", "WARN");
            EmbeddedCluster.Service router = EmbeddedCluster.startRouter(model, "127.0.0.1", List.of(), routerArgs);
            started.add(router);
            assertThat(router.context().getBean(ExpertDirectory.class).awaitCoverage(Duration.ofSeconds(30))).isTrue();
            ManagedChannel channel = RouterCalls.channel(router.address());
            try {
                var stub = RouterServiceGrpc.newBlockingStub(channel);
                List<ExpertServerInfo> servers = stub.describeModel(DescribeModelRequest.getDefaultInstance())
                        .getExpertServersList();
                assertThat(servers).extracting(ExpertServerInfo::getServerId).containsExactlyInAnyOrder(
                        experts.getMetadata().getName() + "-0", experts.getMetadata().getName() + "-1",
                        experts.getMetadata().getName() + "-2");
                assertThat(servers.stream().flatMap(s -> s.getExpertIdsList().stream()).sorted().toList())
                        .containsExactly(0, 1, 2, 3, 4, 5);
                float[] x = new float[16 * 32];
                java.util.Arrays.fill(x, 0.25f);
                assertThat(stub.forward(RouterCalls.request(1, x, 16, 32, WireType.FLOAT32)).getHiddenStates()
                        .getNumTokens()).isEqualTo(16);
            } finally {
                RouterCalls.close(channel);
            }
        } finally {
            for (int i = started.size() - 1; i >= 0; i--) {
                started.get(i).close();
            }
            server.destroy();
        }
    }

    private static List<HasMetadata> render() {
        return RenderedChart.render(NAMESPACE, Map.of("expert.shards", 3, "expert.weights", "F32"));
    }

    private static <T extends HasMetadata> T only(List<HasMetadata> objects, Class<T> type) {
        List<T> found = objects.stream().filter(type::isInstance).map(type::cast).toList();
        assertThat(found).hasSize(1);
        return found.getFirst();
    }

    /** The container's {@code --key=value} arguments with {@code $(VAR)} references expanded, as Spring properties. */
    private static Map<String, Object> springArgs(List<String> args, Map<String, String> env) {
        Map<String, Object> properties = new LinkedHashMap<>();
        for (String arg : args) {
            if (!arg.startsWith("--") || !arg.contains("=")) {
                continue;
            }
            String value = arg.substring(arg.indexOf('=') + 1);
            for (Map.Entry<String, String> e : env.entrySet()) {
                value = value.replace("$(" + e.getKey() + ")", e.getValue());
            }
            properties.put(arg.substring(2, arg.indexOf('=')), value);
        }
        return properties;
    }

    /** The pod the StatefulSet controller would create for {@code ordinal}, Ready at the expert server's address. */
    private static Pod pod(StatefulSet sts, int ordinal, String address) {
        String ip = address.substring(0, address.lastIndexOf(':'));
        int port = Integer.parseInt(address.substring(address.lastIndexOf(':') + 1));
        Pod pod = new PodBuilder()
                .withNewMetadataLike(sts.getSpec().getTemplate().getMetadata())
                .withName(sts.getMetadata().getName() + "-" + ordinal).withNamespace(NAMESPACE).withUid("uid-" + ordinal)
                .addToLabels("apps.kubernetes.io/pod-index", Integer.toString(ordinal)).endMetadata()
                .withSpec(sts.getSpec().getTemplate().getSpec())
                .withNewStatus().withPodIP(ip).addNewCondition().withType("Ready").withStatus("True").endCondition()
                .endStatus()
                .build();
        // The real port of this test's server, under the port name the chart gives (the router looks it up by name).
        pod.getSpec().getContainers().getFirst().getPorts().stream().filter(p -> "grpc".equals(p.getName()))
                .findFirst().orElseThrow(() -> new AssertionError("the chart's expert container has no port named grpc"))
                .setContainerPort(port);
        return pod;
    }
}
