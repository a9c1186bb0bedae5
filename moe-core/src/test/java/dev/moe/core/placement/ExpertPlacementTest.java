package dev.moe.core.placement;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.placement.ExpertPlacement.Strategy;
import java.util.Arrays;
import org.junit.jupiter.api.Test;

class ExpertPlacementTest {
    private static final int[][] CASES = {{1, 1}, {8, 1}, {8, 2}, {8, 3}, {8, 8}, {16, 5}, {60, 7}, {64, 64}, {257, 16},
            {128, 127}};

    @Test
    void everyExpertIsHostedExactlyOnce() {
        for (Strategy strategy : Strategy.values()) {
            for (int[] c : CASES) {
                int experts = c[0];
                int servers = c[1];
                int[] hosts = new int[experts];
                int min = Integer.MAX_VALUE;
                int max = 0;
                for (int s = 0; s < servers; s++) {
                    int[] ids = ExpertPlacement.experts(strategy, experts, s, servers);
                    assertThat(ids).as("%s E=%d n=%d server %d", strategy, experts, servers, s).isNotEmpty().isSorted();
                    for (int id : ids) {
                        assertThat(id).isBetween(0, experts - 1);
                        hosts[id]++;
                        if (strategy == Strategy.STRIDED) {
                            assertThat(id % servers).isEqualTo(s);
                        }
                    }
                    if (strategy == Strategy.CONTIGUOUS) {
                        assertThat(ids[ids.length - 1] - ids[0] + 1).as("contiguous").isEqualTo(ids.length);
                    }
                    min = Math.min(min, ids.length);
                    max = Math.max(max, ids.length);
                }
                int[] once = new int[experts];
                Arrays.fill(once, 1);
                assertThat(hosts).as("%s E=%d n=%d", strategy, experts, servers).containsExactly(once);
                assertThat(max - min).as("%s E=%d n=%d sizes", strategy, experts, servers).isLessThanOrEqualTo(1);
            }
        }
    }

    @Test
    void contiguousRangesInServerOrder() {
        assertThat(ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 0, 3)).containsExactly(0, 1);
        assertThat(ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 1, 3)).containsExactly(2, 3, 4);
        assertThat(ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 2, 3)).containsExactly(5, 6, 7);
        assertThat(ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 0, 1)).containsExactly(0, 1, 2, 3, 4, 5, 6, 7);
        assertThat(ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 5, 8)).containsExactly(5);
    }

    @Test
    void stridedModulo() {
        assertThat(ExpertPlacement.experts(Strategy.STRIDED, 8, 0, 3)).containsExactly(0, 3, 6);
        assertThat(ExpertPlacement.experts(Strategy.STRIDED, 8, 1, 3)).containsExactly(1, 4, 7);
        assertThat(ExpertPlacement.experts(Strategy.STRIDED, 8, 2, 3)).containsExactly(2, 5);
        assertThat(ExpertPlacement.experts(Strategy.STRIDED, 8, 7, 8)).containsExactly(7);
        assertThat(ExpertPlacement.experts(Strategy.STRIDED, 4, 0, 1)).containsExactly(0, 1, 2, 3);
    }

    @Test
    void invalidServers() {
        assertThatThrownBy(() -> ExpertPlacement.experts(Strategy.CONTIGUOUS, 8, 3, 3))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("server index 3 is not in [0, 3)");
        assertThatThrownBy(() -> ExpertPlacement.experts(Strategy.STRIDED, 8, -1, 3))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("server index -1");
        assertThatThrownBy(() -> ExpertPlacement.experts(Strategy.STRIDED, 8, 0, 0))
                .isInstanceOf(IllegalArgumentException.class);
        assertThatThrownBy(() -> ExpertPlacement.experts(Strategy.CONTIGUOUS, 4, 0, 5))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("5 expert servers for 4 experts")
                .hasMessageContaining("use at most 4");
    }

    @Test
    void parseLists() {
        assertThat(ExpertPlacement.parse("0-3,7", 8)).containsExactly(0, 1, 2, 3, 7);
        assertThat(ExpertPlacement.parse("7", 8)).containsExactly(7);
        assertThat(ExpertPlacement.parse(" 5 , 1 - 2 ", 8)).containsExactly(1, 2, 5);
        assertThat(ExpertPlacement.parse("6,0-1,1,0", 8)).containsExactly(0, 1, 6); // sorted, deduplicated
        assertThat(ExpertPlacement.parse("3-3", 8)).containsExactly(3);
        assertThat(ExpertPlacement.parse("0-63", 64)).hasSize(64).startsWith(0).endsWith(63);
        assertThat(ExpertPlacement.parse("2,,4,", 8)).containsExactly(2, 4);
    }

    @Test
    void parseOutOfRange() {
        assertThatThrownBy(() -> ExpertPlacement.parse("8", 8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("expert range '8' is not within [0, 8)");
        assertThatThrownBy(() -> ExpertPlacement.parse("0-3,5-9", 8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'5-9' is not within [0, 8)");
        assertThatThrownBy(() -> ExpertPlacement.parse("5-2", 8))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("'5-2'");
    }

    @Test
    void parseGarbage() {
        for (String garbage : new String[] {"a", "1-b", "-1", "1-", "1-2-3", "0x3", "1.5"}) {
            assertThatThrownBy(() -> ExpertPlacement.parse(garbage, 8))
                    .as(garbage)
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("expert list '" + garbage + "'")
                    .hasMessageContaining("is not a number or range");
        }
    }

    @Test
    void parseEmpty() {
        for (String empty : new String[] {"", " ", ",", " , ,"}) {
            assertThatThrownBy(() -> ExpertPlacement.parse(empty, 8))
                    .as("'%s'", empty)
                    .isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("names no expert");
        }
    }
}
