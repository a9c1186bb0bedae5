package dev.moe.router.dispatch;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.placement.ExpertPlacement;
import dev.moe.core.placement.ExpertPlacement.Strategy;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.IntStream;
import org.junit.jupiter.api.Test;

class ExpertRoutingTableTest {

    private static ExpertEndpoint endpoint(String id, int... experts) {
        return new ExpertEndpoint(id, id + ":50051", experts, null);
    }

    @Test
    void replicasListEveryHostingServerInRegistrationOrder() {
        ExpertEndpoint a = endpoint("a", 0, 1, 2, 3);
        ExpertEndpoint b = endpoint("b", 4, 5, 6, 7);
        ExpertEndpoint hot = endpoint("hot", 2, 3, 6);
        ExpertRoutingTable table = ExpertRoutingTable.of(8, List.of(a, b, hot));

        assertThat(table.numExperts()).isEqualTo(8);
        assertThat(table.endpoints()).containsExactly(a, b, hot);
        assertThat(table.replicas(0)).containsExactly(a);
        assertThat(table.replicas(2)).containsExactly(a, hot);
        assertThat(table.replicas(3)).containsExactly(a, hot);
        assertThat(table.replicas(5)).containsExactly(b);
        assertThat(table.replicas(6)).containsExactly(b, hot);
        assertThat(table.uncoveredExperts()).isEmpty();
    }

    @Test
    void selectReturnsAServerHostingTheExpert() {
        ExpertEndpoint a = endpoint("a", 0, 2, 4);
        ExpertEndpoint b = endpoint("b", 1, 3, 5);
        ExpertEndpoint hot = endpoint("hot", 0, 1);
        ExpertRoutingTable table = ExpertRoutingTable.of(6, List.of(hot, a, b));

        for (int e = 0; e < 6; e++) {
            ExpertEndpoint chosen = table.select(e);
            assertThat(chosen).as("expert %d", e).isNotNull();
            assertThat(chosen.expertIds()).as("expert %d on %s", e, chosen).contains(e);
            assertThat(table.replicas(e)).contains(chosen);
        }
        assertThat(table.select(2)).isEqualTo(a);
        assertThat(table.select(5)).isEqualTo(b);
    }

    @Test
    void selectOverPlacementsAlwaysHitsTheOwner() {
        for (Strategy strategy : Strategy.values()) {
            for (int numExperts = 1; numExperts <= 16; numExperts++) {
                for (int numServers = 1; numServers <= numExperts; numServers++) {
                    List<ExpertEndpoint> endpoints = new ArrayList<>();
                    for (int s = 0; s < numServers; s++) {
                        endpoints.add(endpoint("s" + s, ExpertPlacement.experts(strategy, numExperts, s, numServers)));
                    }
                    ExpertRoutingTable table = ExpertRoutingTable.of(numExperts, endpoints);
                    assertThat(table.uncoveredExperts()).isEmpty();
                    for (int e = 0; e < numExperts; e++) {
                        assertThat(table.replicas(e)).hasSize(1);
                        assertThat(table.select(e).expertIds()).contains(e);
                    }
                }
            }
        }
    }

    @Test
    void uncoveredExpertsAreThoseNobodyHostsAscending() {
        ExpertRoutingTable table = ExpertRoutingTable.of(8, List.of(endpoint("a", 5, 0), endpoint("b", 2, 7)));

        assertThat(table.uncoveredExperts()).containsExactly(1, 3, 4, 6);
        assertThat(table.select(3)).isNull();
        assertThat(table.replicas(3)).isEmpty();
        assertThat(table.select(5).serverId()).isEqualTo("a");
        assertThat(table.select(7).serverId()).isEqualTo("b");
    }

    @Test
    void expertIdAtOrAboveNumExpertsIsRejected() {
        ExpertEndpoint bad = endpoint("bad", 0, 8);

        assertThatThrownBy(() -> ExpertRoutingTable.of(8, List.of(endpoint("ok", 1), bad)))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("expert 8")
                .hasMessageContaining("[0, 8)")
                .hasMessageContaining("bad@bad:50051");
    }

    @Test
    void negativeExpertIdIsRejected() {
        assertThatThrownBy(() -> ExpertRoutingTable.of(4, List.of(endpoint("neg", -1, 2))))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("expert -1")
                .hasMessageContaining("[0, 4)");
    }

    @Test
    void emptyTableCoversNothing() {
        ExpertRoutingTable table = ExpertRoutingTable.empty(5);

        assertThat(table.numExperts()).isEqualTo(5);
        assertThat(table.endpoints()).isEmpty();
        assertThat(table.uncoveredExperts()).containsExactly(0, 1, 2, 3, 4);
        for (int e = 0; e < 5; e++) {
            assertThat(table.select(e)).isNull();
            assertThat(table.replicas(e)).isEmpty();
        }
    }

    @Test
    void emptyTableWithNoExperts() {
        ExpertRoutingTable table = ExpertRoutingTable.empty(0);

        assertThat(table.numExperts()).isZero();
        assertThat(table.uncoveredExperts()).isEmpty();
    }

    @Test
    void tableIsASnapshotOfTheEndpointList() {
        List<ExpertEndpoint> endpoints = new ArrayList<>(List.of(endpoint("a", 0, 1)));
        ExpertRoutingTable table = ExpertRoutingTable.of(3, endpoints);
        endpoints.add(endpoint("b", 2));

        assertThat(table.endpoints()).extracting(ExpertEndpoint::serverId).containsExactly("a");
        assertThat(table.uncoveredExperts()).containsExactly(2);
        assertThatThrownBy(() -> table.endpoints().add(endpoint("c", 2)))
                .isInstanceOf(UnsupportedOperationException.class);
        assertThatThrownBy(() -> table.replicas(0).clear()).isInstanceOf(UnsupportedOperationException.class);
    }

    @Test
    void endpointIdentityIsTheAddress() {
        ExpertEndpoint first = new ExpertEndpoint("expert-0", "10.0.0.1:9000", new int[] {0}, null);
        ExpertEndpoint redescribed = new ExpertEndpoint("expert-0-renamed", "10.0.0.1:9000", new int[] {0, 1}, null);
        ExpertEndpoint other = new ExpertEndpoint("expert-0", "10.0.0.2:9000", new int[] {0}, null);

        assertThat(first).isEqualTo(redescribed).hasSameHashCodeAs(redescribed);
        assertThat(first).isNotEqualTo(other);
        assertThat(first.toString()).isEqualTo("expert-0@10.0.0.1:9000[0]");
    }

    @Test
    void everyExpertCoveredOnceWithContiguousAndStridedIdsMatchingReplicas() {
        ExpertRoutingTable table = ExpertRoutingTable.of(10, List.of(
                endpoint("c0", ExpertPlacement.experts(Strategy.CONTIGUOUS, 10, 0, 3)),
                endpoint("c1", ExpertPlacement.experts(Strategy.CONTIGUOUS, 10, 1, 3)),
                endpoint("c2", ExpertPlacement.experts(Strategy.CONTIGUOUS, 10, 2, 3))));
        // contiguous 10/3: [0,3) [3,6) [6,10)
        assertThat(IntStream.range(0, 10).mapToObj(e -> table.select(e).serverId()).toList())
                .containsExactly("c0", "c0", "c0", "c1", "c1", "c1", "c2", "c2", "c2", "c2");
    }
}
