package dev.moe.expert;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.config.ServerArguments;
import dev.moe.core.placement.ExpertPlacement.Strategy;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.WeightType;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

class ExpertServerPropertiesTest {

    private static ExpertServerProperties props(String serverId, Integer index, Integer numServers, Strategy placement,
                                                String experts) {
        return new ExpertServerProperties(null, serverId, index, numServers, placement, experts, null, null, null, null,
                null, null, null, null, null);
    }

    @Test
    void defaults() {
        ExpertServerProperties p = new ExpertServerProperties(null, null, null, null, null, null, null, null, null, null,
                null, null, null, null, null);

        assertThat(p.model()).isNull();
        assertThat(p.serverIndex()).isEqualTo(0);
        assertThat(p.numServers()).isEqualTo(1);
        assertThat(p.placement()).isEqualTo(Strategy.CONTIGUOUS);
        assertThat(p.serverId()).isEqualTo("expert-0");
        assertThat(p.experts()).isNull();
        assertThat(p.maxTokensPerCall()).isEqualTo(16384);
        assertThat(p.hostedExperts(8)).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        assertThat(p.weights()).isEqualTo(WeightType.BF16);
        assertThat(p.sparsity()).isNull();
        assertThat(p.sparseCrossover()).isNull(); // its default depends on the layout
        assertThat(p.sparseCrossoverFor(PanelMatrix.Layout.PANELS)).isEqualTo(0.25); // the BF16 panels default
        assertThat(p.kernelThreads()).isEqualTo(Runtime.getRuntime().availableProcessors());
        assertThat(p.metrics().layerTag()).isFalse();
        assertThat(p.layout()).isNull(); // its default depends on the thresholds file
        assertThat(p.layoutFor(null)).isEqualTo(PanelMatrix.Layout.PANELS);
        assertThat(p.warmup()).isEqualTo(Duration.ofSeconds(2));
    }

    @Test
    void warmupCanBeSkippedButNotNegative() {
        assertThat(new ExpertServerProperties(null, null, null, null, null, null, null, null, null, null, null, null,
                null, null, Duration.ZERO).warmup()).isZero();
        assertThatThrownBy(() -> new ExpertServerProperties(null, null, null, null, null, null, null, null, null, null,
                null, null, null, null, Duration.ofSeconds(-1)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("moe.expert.warmup PT-1S must not be negative");
    }

    private static ExpertServerProperties sparse(WeightType weights, PanelMatrix.Layout layout, Double crossover) {
        return new ExpertServerProperties(null, null, null, null, null, null, null, weights, Path.of("/t.json"),
                crossover, null, null, null, layout, null);
    }

    /** ROWS once the thresholds' target sparsity makes a sparse token on it faster than a dense one on PANELS. */
    @Test
    void aThresholdsFileChoosesTheLayoutByWeightTypeAndTargetSparsity() {
        assertThat(sparse(WeightType.INT8, null, null).layoutFor(0.5)).isEqualTo(PanelMatrix.Layout.PANELS);
        assertThat(sparse(WeightType.INT8, null, null).layoutFor(0.6)).isEqualTo(PanelMatrix.Layout.ROWS);
        assertThat(sparse(WeightType.INT8, null, null).layoutFor(0.7)).isEqualTo(PanelMatrix.Layout.ROWS);
        assertThat(sparse(WeightType.BF16, null, null).layoutFor(0.2)).isEqualTo(PanelMatrix.Layout.PANELS);
        // 0.3: a token's union (0.7) is over ROWS' bf16 crossover (0.65), so ROWS would only run it dense, slower
        assertThat(sparse(WeightType.BF16, null, null).layoutFor(0.3)).isEqualTo(PanelMatrix.Layout.PANELS);
        assertThat(sparse(WeightType.BF16, null, null).layoutFor(0.4)).isEqualTo(PanelMatrix.Layout.ROWS);
        assertThat(sparse(WeightType.BF16, null, null).layoutFor(0.5)).isEqualTo(PanelMatrix.Layout.ROWS);
        assertThat(sparse(WeightType.F32, null, null).layoutFor(0.1)).isEqualTo(PanelMatrix.Layout.ROWS);
        // an explicit layout wins either way
        assertThat(sparse(WeightType.INT8, PanelMatrix.Layout.ROWS, null).layoutFor(0.5))
                .isEqualTo(PanelMatrix.Layout.ROWS);
        assertThat(sparse(WeightType.BF16, PanelMatrix.Layout.PANELS, null).layoutFor(0.7))
                .isEqualTo(PanelMatrix.Layout.PANELS);
    }

    @Test
    void theCrossoverDefaultsPerWeightTypeAndLayoutUnlessSet() {
        assertThat(sparse(WeightType.INT8, null, null).sparseCrossoverFor(PanelMatrix.Layout.ROWS)).isEqualTo(0.6);
        assertThat(sparse(WeightType.INT8, null, null).sparseCrossoverFor(PanelMatrix.Layout.PANELS)).isEqualTo(0.1);
        assertThat(sparse(WeightType.BF16, null, null).sparseCrossoverFor(PanelMatrix.Layout.ROWS)).isEqualTo(0.65);
        assertThat(sparse(WeightType.BF16, null, 0.9).sparseCrossoverFor(PanelMatrix.Layout.ROWS)).isEqualTo(0.9);
    }

    @Test
    void serverIdDefaultsFromTheIndex() {
        assertThat(props(null, 3, 4, null, null).serverId()).isEqualTo("expert-3");
        assertThat(props("", 2, 4, null, null).serverId()).isEqualTo("expert-2");
        assertThat(props("   ", 1, 4, null, null).serverId()).isEqualTo("expert-1");
    }

    @Test
    void podIndexSelectsTheShardAndReplicasShareIt() {
        // 3 shards x 2 replicas: pods 0..5 host shards 0,1,2,0,1,2
        for (int pod = 0; pod < 6; pod++) {
            ExpertServerProperties p = new ExpertServerProperties(null, null, null, 3, null, null, null, null, null, null,
                    null, pod, null, null, null);
            assertThat(p.serverIndex()).isEqualTo(pod % 3);
            assertThat(p.hostedExperts(9)).containsExactly(3 * (pod % 3), 3 * (pod % 3) + 1, 3 * (pod % 3) + 2);
        }
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> new ExpertServerProperties(null, null, null, 3, null,
                null, null, null, null, null, null, -1, null, null, null)).hasMessageContaining("pod-index -1");
    }

    @Test
    void explicitValuesAreKept() {
        ExpertServerProperties p = new ExpertServerProperties(Path.of("/models/qwen"), "pod-a", 2, 5,
                Strategy.STRIDED, "1,3", 128, WeightType.INT8, Path.of("/t.json"), 0.5, 3, null,
                new ExpertServerProperties.Metrics(true), PanelMatrix.Layout.PANELS, Duration.ofMillis(500));

        assertThat(p.model()).isEqualTo(Path.of("/models/qwen"));
        assertThat(p.serverId()).isEqualTo("pod-a");
        assertThat(p.serverIndex()).isEqualTo(2);
        assertThat(p.numServers()).isEqualTo(5);
        assertThat(p.placement()).isEqualTo(Strategy.STRIDED);
        assertThat(p.maxTokensPerCall()).isEqualTo(128);
        assertThat(p.weights()).isEqualTo(WeightType.INT8);
        assertThat(p.sparsity()).isEqualTo(Path.of("/t.json"));
        assertThat(p.sparseCrossover()).isEqualTo(0.5);
        assertThat(p.kernelThreads()).isEqualTo(3);
        assertThat(p.warmup()).isEqualTo(Duration.ofMillis(500));
    }

    @Test
    void contiguousFromIndexAndNumServers() {
        // 8 experts over 3 servers: [0,2) [2,5) [5,8)
        assertThat(props(null, 0, 3, null, null).hostedExperts(8)).containsExactly(0, 1);
        assertThat(props(null, 1, 3, null, null).hostedExperts(8)).containsExactly(2, 3, 4);
        assertThat(props(null, 2, 3, Strategy.CONTIGUOUS, null).hostedExperts(8)).containsExactly(5, 6, 7);
        // 64 experts over 4 servers: 16 each
        assertThat(props(null, 3, 4, null, null).hostedExperts(64)).hasSize(16).startsWith(48).endsWith(63);
    }

    @Test
    void stridedFromIndexAndNumServers() {
        assertThat(props(null, 0, 3, Strategy.STRIDED, null).hostedExperts(8)).containsExactly(0, 3, 6);
        assertThat(props(null, 1, 3, Strategy.STRIDED, null).hostedExperts(8)).containsExactly(1, 4, 7);
        assertThat(props(null, 2, 3, Strategy.STRIDED, null).hostedExperts(8)).containsExactly(2, 5);
    }

    @Test
    void serversPartitionTheExperts() {
        for (Strategy strategy : Strategy.values()) {
            for (int numExperts = 1; numExperts <= 20; numExperts++) {
                for (int numServers = 1; numServers <= numExperts; numServers++) {
                    int[] owners = new int[numExperts];
                    for (int s = 0; s < numServers; s++) {
                        int[] hosted = props(null, s, numServers, strategy, null).hostedExperts(numExperts);
                        assertThat(hosted).as("%s %d/%d of %d", strategy, s, numServers, numExperts)
                                .isNotEmpty().isSorted();
                        for (int e : hosted) {
                            owners[e]++;
                        }
                    }
                    assertThat(owners).as("%s %d servers, %d experts", strategy, numServers, numExperts)
                            .containsOnly(1);
                }
            }
        }
    }

    @Test
    void explicitListOverridesIndexAndNumServers() {
        ExpertServerProperties p = props(null, 1, 4, Strategy.STRIDED, "6, 0-2,2");

        assertThat(p.hostedExperts(8)).containsExactly(0, 1, 2, 6);
        // the id still comes from the index
        assertThat(p.serverId()).isEqualTo("expert-1");
    }

    @Test
    void blankExplicitListFallsBackToPlacement() {
        assertThat(props(null, 1, 2, null, "  ").hostedExperts(6)).containsExactly(3, 4, 5);
        assertThat(props(null, 1, 2, Strategy.STRIDED, "").hostedExperts(6)).containsExactly(1, 3, 5);
    }

    @Test
    void explicitListOutsideTheModelIsRejected() {
        assertThatThrownBy(() -> props(null, null, null, null, "0-8").hostedExperts(8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("0-8")
                .hasMessageContaining("[0, 8)");
        assertThatThrownBy(() -> props(null, null, null, null, "a-b").hostedExperts(8))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> props(null, null, null, null, ",").hostedExperts(8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("names no expert");
    }

    @Test
    void impossiblePlacementIsRejected() {
        assertThatThrownBy(() -> props(null, 4, 4, null, null).hostedExperts(8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("server index 4");
        assertThatThrownBy(() -> props(null, 0, 9, null, null).hostedExperts(8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("9 expert servers for 8 experts");
    }

    private static String argumentProblem(String... args) {
        return ServerArguments.problem(args, "moe.expert", ExpertServerProperties.class);
    }

    /** Every expert setting in the README's table is one the command-line check accepts, and only those. */
    @Test
    void theCommandLineCheckKnowsEverySettingTheReadmeDocuments() throws IOException {
        String readme = Files.readString(Path.of("..", "README.md"));
        Matcher m = Pattern.compile("`(moe\\.expert\\.[a-z.-]+)[`=]").matcher(readme);
        List<String> documented = m.results().map(r -> r.group(1)).distinct().toList();
        assertThat(documented).contains("moe.expert.weights", "moe.expert.sparsity", "moe.expert.layout",
                "moe.expert.metrics.layer-tag");
        for (String setting : documented) {
            assertThat(argumentProblem("--" + setting + "=x")).as(setting).isNull();
        }
    }

    @Test
    void theCommandLineCheckCatchesWhatSpringWouldIgnore() {
        assertThat(argumentProblem("--moe.expert.model=/models/m", "--moe.expert.server-index=0",
                "--moe.expert.num-servers=2", "--spring.grpc.server.port=9101")).isNull();
        assertThat(argumentProblem("--weights=int8")).isEqualTo("unknown option --weights: did you mean"
                + " --moe.expert.weights?");
        assertThat(argumentProblem("--sparsity=t.json")).isEqualTo("unknown option --sparsity: did you mean"
                + " --moe.expert.sparsity?");
        assertThat(argumentProblem("--moe.expert.weigths=int8")).startsWith("unknown setting --moe.expert.weigths;"
                + " the moe.expert settings are ").contains("moe.expert.weights", "moe.expert.kernel-threads");
    }
}
