package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.checkpoint.SyntheticCheckpoint.Spec;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.KernelWarmup;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.oracle.ReferenceMoeBlock;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.expert.v1.DescribeShardRequest;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import dev.moe.proto.expert.v1.ExpertStats;
import dev.moe.proto.expert.v1.GetStatsRequest;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.util.Map;
import java.util.SplittableRandom;
import dev.moe.expert.shard.ExpertShard;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.io.TempDir;

/**
 * SCAP end to end: calibrate thresholds for 50% sparsity with {@code moe calibrate}, serve with them, and check on
 * held-out tokens that the expert servers report the sparsity they achieved (close to the target) while the MoE
 * output stays close to the exact one and routing is untouched.
 */
class SparseServingTest {

    @ParameterizedTest(name = "layout {0}")
    @ValueSource(strings = {"PANELS", "ROWS"})
    void calibratedThresholdsHitTheirTargetWhileServing(String layout, @TempDir Path dir) throws Exception {
        Path model = dir.resolve("model");
        Path thresholds = dir.resolve("thresholds.json");
        calibratedModel(new Spec(ModelFamily.QWEN3_MOE, 128, 2, 8, 2, 96, 0, 1, 1, true, DType.BF16, 1, 4), model,
                thresholds, 2048);

        EmbeddedCluster.Options options = EmbeddedCluster.Options.of(model, 2).withProperties(RouterCalls.EXACT)
                .withProperties(Map.of("moe.expert.sparsity", thresholds.toString(), "moe.expert.layout", layout,
                        // always prune: this test is about what pruning does, not whether it pays on this machine
                        "moe.expert.sparse-crossover", "1.0"));
        try (Checkpoint checkpoint = Checkpoint.open(model); EmbeddedCluster cluster = EmbeddedCluster.start(options)) {
            // the expert servers ran their kernels (F32 here, this layout, dense and sparse) before they listened
            assertThat(KernelWarmup.isWarm(WeightType.F32, PanelMatrix.Layout.valueOf(layout), true)).isTrue();
            for (EmbeddedCluster.Service expert : cluster.experts()) {
                assertThat(expert.context().getBean(KernelWarmup.Result.class)).isNotNull();
            }
            MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
            ManagedChannel channel = RouterCalls.channel(cluster.routerAddress());
            SplittableRandom random = new SplittableRandom(99); // held out: calibration used its own seed
            double errorSquares = 0;
            double referenceSquares = 0;
            try {
                var router = RouterServiceGrpc.newBlockingStub(channel);
                for (int call = 0; call < 150; call++) {
                    int layer = config.moeLayers().get(call % 2);
                    float[] x = new float[128]; // one token per call: decode, where the sparse path pays
                    for (int i = 0; i < x.length; i++) {
                        x[i] = (float) random.nextGaussian();
                    }
                    var response = router.forward(RouterCalls.request(layer, x, 1, 128, WireType.FLOAT32));
                    ReferenceMoeBlock.Result exact = ReferenceMoeBlock.forward(checkpoint, config, layer, x, 1);
                    assertThat(RouterCalls.ids(response)).containsExactly(exact.topkIds());
                    float[] y = RouterCalls.output(response);
                    for (int h = 0; h < 128; h++) {
                        errorSquares += Math.pow(y[h] - exact.output()[h], 2);
                        referenceSquares += Math.pow(exact.output()[h], 2);
                    }
                }
            } finally {
                RouterCalls.close(channel);
            }
            // Pruning half the activations perturbs the output, but far less than the output itself.
            double relativeError = Math.sqrt(errorSquares / referenceSquares);
            assertThat(relativeError).isBetween(1e-4, 0.5);

            long tokens = 0;
            double gateUp = 0;
            double down = 0;
            for (EmbeddedCluster.Service expert : cluster.experts()) {
                ManagedChannel ch = RouterCalls.channel(expert.address());
                try {
                    var stub = ExpertServiceGrpc.newBlockingStub(ch);
                    assertThat(stub.describeShard(DescribeShardRequest.getDefaultInstance()).getSparsityEnabled()).isTrue();
                    for (ExpertStats s : stub.getStats(GetStatsRequest.getDefaultInstance()).getExpertsList()) {
                        tokens += s.getTokens();
                        gateUp += s.getGateUpSparsity() * s.getTokens();
                        down += s.getDownSparsity() * s.getTokens();
                        if (s.getTokens() > 0) {
                            assertThat(s.getSparseRuns()).as("expert %d", s.getExpertId()).isPositive();
                            assertThat(s.getDenseRuns()).as("single tokens stay sparse").isZero();
                        }
                    }
                } finally {
                    RouterCalls.close(ch);
                }
            }
            assertThat(tokens).isEqualTo(150L * 2); // top-2
            assertThat(gateUp / tokens).as("achieved gate/up sparsity").isBetween(0.46, 0.54);
            assertThat(down / tokens).as("achieved down sparsity").isBetween(0.46, 0.54);
        }
    }

    /**
     * Without moe.expert.layout, a server with thresholds packs its experts in ROWS only where that pays at the file's
     * target sparsity: int8 at 0.5 stays in PANELS (where its crossover keeps it dense), bf16 goes to ROWS.
     */
    @Test
    void theDefaultLayoutFollowsTheThresholdsTargetSparsity(@TempDir Path dir) throws Exception {
        Path model = dir.resolve("model");
        Path thresholds = dir.resolve("thresholds.json");
        calibratedModel(new Spec(ModelFamily.QWEN3_MOE, 64, 2, 4, 2, 32, 0, 1, 1, true, DType.BF16, 1, 2), model,
                thresholds, 256);
        Map<String, PanelMatrix.Layout> expected = Map.of("INT8", PanelMatrix.Layout.PANELS, "BF16",
                PanelMatrix.Layout.ROWS);
        for (var weights : expected.entrySet()) {
            try (EmbeddedCluster.Service expert = EmbeddedCluster.startExpert(model, "127.0.0.1", Map.of(
                    "moe.expert.weights", weights.getKey(), "moe.expert.sparsity", thresholds.toString(),
                    "moe.expert.warmup", "0s"))) {
                assertThat(expert.context().getBean(ExpertShard.class).layout()).as(weights.getKey())
                        .isEqualTo(weights.getValue());
            }
        }
    }

    /** Writes a synthetic checkpoint and calibrates it for a target sparsity of 0.5 with {@code tokens} inputs. */
    private static void calibratedModel(Spec spec, Path model, Path thresholds, int tokens) throws Exception {
        SyntheticCheckpoint.write(model, spec, SyntheticCheckpoint.SILENT);
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--tokens",
                String.valueOf(tokens), "--out", thresholds.toString())).isZero();
    }
}
