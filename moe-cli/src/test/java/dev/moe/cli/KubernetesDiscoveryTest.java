package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.checkpoint.SyntheticCheckpoint.Spec;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.expert.shard.ExpertCallStats;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.discovery.ExpertDirectory;
import dev.moe.router.discovery.KubernetesExpertDiscovery;
import dev.moe.router.dispatch.ExpertChannels;
import dev.moe.router.dispatch.ExpertEndpoint;
import io.fabric8.kubernetes.api.model.Pod;
import io.fabric8.kubernetes.api.model.PodBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.server.mock.KubernetesCrudDispatcher;
import io.fabric8.kubernetes.client.server.mock.KubernetesMockServer;
import io.fabric8.mockwebserver.Context;
import io.fabric8.mockwebserver.MockWebServer;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.net.InetAddress;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.function.Supplier;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Kubernetes discovery against the fabric8 mock API server in CRUD mode with live watches: expert pods are created,
 * made ready and unready, deleted and re-created with another IP, each pointing at a real expert server on its own
 * loopback address; after every event the router's table and real forward calls are checked.
 */
class KubernetesDiscoveryTest {
    private static final String NAMESPACE = "moe-test";

    @Test
    void routerFollowsExpertPods(@TempDir Path dir) throws Exception {
        Spec spec = new Spec(ModelFamily.QWEN3_MOE, 32, 2, 4, 2, 16, 0, 1, 1, true, DType.F32, 1, 5);
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, spec, SyntheticCheckpoint.SILENT);
        Map<String, Object> quiet = Map.of("logging.level.root", "WARN");
        KubernetesMockServer server = new KubernetesMockServer(new Context(), new MockWebServer(), new HashMap<>(),
                new KubernetesCrudDispatcher(), false);
        server.init(InetAddress.getLoopbackAddress(), 0);
        try (KubernetesClient client = server.createClient();
             var expertA = EmbeddedCluster.startExpert(model, "127.0.0.2", with(quiet, "moe.expert.experts", "0-1"));
             var expertB = EmbeddedCluster.startExpert(model, "127.0.0.3", with(quiet, "moe.expert.experts", "2-3"));
             var expertC = EmbeddedCluster.startExpert(model, "127.0.0.4", with(quiet, "moe.expert.experts", "0-1"));
             var router = EmbeddedCluster.startRouter(model, "127.0.0.1", List.of(), Map.of(
                     "logging.level.root", "WARN",
                     "moe.router.kubernetes.enabled", "true",
                     "moe.router.kubernetes.namespace", NAMESPACE,
                     "moe.router.kubernetes.label-selector", "app.kubernetes.io/component=expert",
                     "moe.router.kubernetes.master-url", server.url("/")))) {
            ExpertDirectory directory = router.context().getBean(ExpertDirectory.class);
            ExpertChannels channels = router.context().getBean(ExpertChannels.class);
            ManagedChannel channel = RouterCalls.channel(router.address());
            try {
                var stub = RouterServiceGrpc.newBlockingStub(channel);
                var pods = client.pods().inNamespace(NAMESPACE);
                pods.resource(pod("expert-0", "uid-0", expertA.address(), true)).create();
                pods.resource(pod("expert-1", "uid-1", expertB.address(), true)).create();
                assertThat(directory.awaitCoverage(Duration.ofSeconds(20))).isTrue();
                assertThat(servers(directory)).containsExactlyInAnyOrder(expertA.address(), expertB.address());
                assertForwardWorks(stub);

                // expert-1 turns unready: its experts leave the table, forwards needing them fail fast
                pods.withName("expert-1").edit(p -> ready(p, false));
                await(() -> directory.table().uncoveredExperts().equals(List.of(2, 3)));
                assertThatThrownBy(() -> forwardMany(stub)).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                    assertThat(e.getStatus().getDescription()).matches("expert [23] of layer [01] has no ready expert server");
                });
                pods.withName("expert-1").edit(p -> ready(p, true));
                assertThat(directory.awaitCoverage(Duration.ofSeconds(20))).isTrue();
                assertForwardWorks(stub);

                // expert-0 is deleted, then re-created on another IP (another server, hosting the same experts)
                pods.withName("expert-0").delete();
                await(() -> directory.table().uncoveredExperts().equals(List.of(0, 1)));
                pods.resource(pod("expert-0", "uid-0b", expertC.address(), true)).create();
                assertThat(directory.awaitCoverage(Duration.ofSeconds(20))).isTrue();
                assertThat(servers(directory)).containsExactlyInAnyOrder(expertC.address(), expertB.address());
                long before = expertC.context().getBean(ExpertCallStats.class).calls();
                assertForwardWorks(stub);
                assertThat(expertC.context().getBean(ExpertCallStats.class).calls()).isGreaterThan(before);

                // churn: 300 readiness flips; the table settles and no channel or thread is left behind
                int threadsBefore = Thread.activeCount();
                for (int i = 0; i < 300; i++) {
                    boolean ready = i % 2 == 1;
                    pods.withName("expert-1").edit(p -> ready(p, ready));
                }
                // Coverage alone can be an intermediate Ready state of the churn with later flips still on their
                // way. Watch events arrive in order: once a marker pod created after the churn is in the table,
                // every flip before it has been applied.
                pods.resource(pod("marker", "uid-marker", expertA.address(), true)).create();
                await(() -> servers(directory).contains(expertA.address()));
                pods.withName("marker").delete();
                await(() -> !servers(directory).contains(expertA.address()));
                assertThat(directory.awaitCoverage(Duration.ofSeconds(30))).isTrue();
                await(() -> channels.size() == 2);
                assertThat(servers(directory)).containsExactlyInAnyOrder(expertC.address(), expertB.address());
                assertForwardWorks(stub);
                assertThat(router.context().getBean(KubernetesExpertDiscovery.class).trackedPods()).isEqualTo(2);
                assertThat(Thread.activeCount()).isLessThan(threadsBefore + 20);
            } finally {
                RouterCalls.close(channel);
            }
        } finally {
            server.destroy();
        }
    }

    private static Pod pod(String name, String uid, String address, boolean ready) {
        String ip = address.substring(0, address.lastIndexOf(':'));
        int port = Integer.parseInt(address.substring(address.lastIndexOf(':') + 1));
        return new PodBuilder()
                .withNewMetadata().withName(name).withNamespace(NAMESPACE).withUid(uid)
                .addToLabels("app.kubernetes.io/component", "expert").endMetadata()
                .withNewSpec().addNewContainer().withName("expert").addNewPort().withName("grpc").withContainerPort(port)
                .endPort().endContainer().endSpec()
                .withNewStatus().withPodIP(ip).addNewCondition().withType("Ready").withStatus(ready ? "True" : "False")
                .endCondition().endStatus()
                .build();
    }

    private static Pod ready(Pod pod, boolean ready) {
        return new PodBuilder(pod).editStatus().withConditions(List.of()).addNewCondition().withType("Ready")
                .withStatus(ready ? "True" : "False").endCondition().endStatus().build();
    }

    private static List<String> servers(ExpertDirectory directory) {
        return directory.table().endpoints().stream().map(ExpertEndpoint::address).toList();
    }

    private static void assertForwardWorks(RouterServiceGrpc.RouterServiceBlockingStub stub) {
        var response = forwardMany(stub);
        assertThat(response.getHiddenStates().getNumTokens()).isEqualTo(64);
    }

    /** 64 random tokens: every expert is chosen by some of them. */
    private static dev.moe.proto.router.v1.ForwardResponse forwardMany(RouterServiceGrpc.RouterServiceBlockingStub stub) {
        float[] x = new float[64 * 32];
        SplittableRandom random = new SplittableRandom(1);
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextGaussian();
        }
        return stub.forward(RouterCalls.request(1, x, 64, 32, WireType.FLOAT32));
    }

    private static void await(Supplier<Boolean> condition) throws InterruptedException {
        long deadline = System.nanoTime() + Duration.ofSeconds(20).toNanos();
        while (!condition.get()) {
            assertThat(System.nanoTime()).as("condition not reached within 20 s").isLessThan(deadline);
            Thread.sleep(20);
        }
    }

    private static Map<String, Object> with(Map<String, Object> base, String key, Object value) {
        Map<String, Object> all = new HashMap<>(base);
        all.put(key, value);
        return all;
    }
}
