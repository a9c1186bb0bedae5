package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.checkpoint.SyntheticCheckpoint.Spec;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.router.v1.DescribeModelRequest;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.discovery.ExpertDirectory;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * An expert server that loaded another checkpoint (same architecture, other weights) is refused by the router; the
 * experts only it hosts have no server, so the router is not SERVING and a forward that needs one of them fails fast
 * with UNAVAILABLE naming the expert and the layer.
 */
class FingerprintRefusalTest {

    @Test
    void routerRefusesAServerOfAnotherCheckpoint(@TempDir Path dir) throws Exception {
        Spec spec = new Spec(ModelFamily.QWEN3_MOE, 32, 2, 4, 2, 16, 0, 1, 1, true, DType.F32, 1, 1);
        Path served = dir.resolve("served");
        Path other = dir.resolve("other");
        SyntheticCheckpoint.write(served, spec, SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(other, spec.withSeed(2), SyntheticCheckpoint.SILENT);
        Map<String, Object> quiet = Map.of("logging.level.root", "OFF");
        try (var good = EmbeddedCluster.startExpert(served, "127.0.0.1", withQuiet(Map.of("moe.expert.experts", "0-1")));
             var stranger = EmbeddedCluster.startExpert(other, "127.0.0.1", withQuiet(Map.of("moe.expert.experts", "2-3")));
             var router = EmbeddedCluster.startRouter(served, "127.0.0.1", List.of(good.address(), stranger.address()),
                     quiet)) {
            ExpertDirectory directory = router.context().getBean(ExpertDirectory.class);
            assertThat(directory.awaitCoverage(Duration.ofSeconds(3))).isFalse();
            assertThat(directory.table().uncoveredExperts()).containsExactly(2, 3);
            ManagedChannel channel = RouterCalls.channel(router.address());
            try {
                assertThat(HealthGrpc.newBlockingStub(channel).check(HealthCheckRequest.newBuilder()
                        .setService(RouterServiceGrpc.SERVICE_NAME).build()).getStatus())
                        .isEqualTo(ServingStatus.NOT_SERVING);
                var routerStub = RouterServiceGrpc.newBlockingStub(channel);
                assertThat(routerStub.describeModel(DescribeModelRequest.getDefaultInstance()).getExpertServersList())
                        .singleElement().satisfies(s -> assertThat(s.getServerId()).isEqualTo("expert-0"));
                // Enough random tokens that some choose expert 2 or 3.
                float[] x = new float[64 * 32];
                java.util.SplittableRandom random = new java.util.SplittableRandom(3);
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) random.nextGaussian();
                }
                assertThatThrownBy(() -> routerStub.forward(RouterCalls.request(1, x, 64, 32, WireType.FLOAT32)))
                        .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                            assertThat(e.getStatus().getDescription())
                                    .matches("expert [23] of layer 1 has no ready expert server");
                        });
            } finally {
                RouterCalls.close(channel);
            }
        }
    }

    private static Map<String, Object> withQuiet(Map<String, Object> properties) {
        Map<String, Object> all = new java.util.HashMap<>(properties);
        all.put("logging.level.root", "OFF");
        return all;
    }
}
