package dev.moe.router.dispatch;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.placement.ExpertPlacement;
import dev.moe.core.placement.ExpertPlacement.Strategy;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/** Property-style checks of {@link DispatchPlan#plan} over random routings and placements (pure planning, no stubs). */
class DispatchPlanTest {

    private static final int TRIALS = 2000;

    /** One (token, expert, weight) assignment; weight compared bit-exactly. */
    private record Assignment(int token, int expert, int weightBits) {
        static Assignment of(int token, int expert, float weight) {
            return new Assignment(token, expert, Float.floatToRawIntBits(weight));
        }
    }

    static ExpertEndpoint endpoint(int index, int[] experts) {
        return new ExpertEndpoint("expert-" + index, "host-" + index + ":50051", experts, null);
    }

    static List<ExpertEndpoint> placement(Strategy strategy, int numExperts, int numServers) {
        List<ExpertEndpoint> endpoints = new ArrayList<>();
        for (int s = 0; s < numServers; s++) {
            endpoints.add(endpoint(s, ExpertPlacement.experts(strategy, numExperts, s, numServers)));
        }
        return endpoints;
    }

    /** Each token: k distinct experts, ascending (as TopKRouter emits them), random positive weights. */
    static RoutingDecision randomRouting(Random rnd, int numTokens, int numExperts, int k) {
        int[] ids = new int[numTokens * k];
        float[] weights = new float[numTokens * k];
        List<Integer> all = new ArrayList<>();
        for (int e = 0; e < numExperts; e++) {
            all.add(e);
        }
        for (int t = 0; t < numTokens; t++) {
            Collections.shuffle(all, rnd);
            int[] chosen = all.subList(0, k).stream().mapToInt(Integer::intValue).sorted().toArray();
            for (int j = 0; j < k; j++) {
                ids[t * k + j] = chosen[j];
                // distinct-ish weights so a swapped weight would be noticed
                weights[t * k + j] = 0.01f + rnd.nextFloat();
            }
        }
        return new RoutingDecision(numTokens, k, ids, weights);
    }

    @Test
    void randomRoutingsSatisfyDispatchInvariants() {
        Random rnd = new Random(0x5EED_D15FL);
        for (int trial = 0; trial < TRIALS; trial++) {
            int numExperts = 1 + rnd.nextInt(16);
            int k = 1 + rnd.nextInt(numExperts);
            int numTokens = 1 + rnd.nextInt(50);
            int numServers = 1 + rnd.nextInt(numExperts);
            Strategy strategy = rnd.nextBoolean() ? Strategy.CONTIGUOUS : Strategy.STRIDED;
            int hidden = 1 + rnd.nextInt(64);
            int layer = rnd.nextInt(48);
            String ctx = "trial " + trial + ": E=" + numExperts + " k=" + k + " T=" + numTokens + " servers="
                    + numServers + " " + strategy;

            List<ExpertEndpoint> endpoints = placement(strategy, numExperts, numServers);
            ExpertRoutingTable table = ExpertRoutingTable.of(numExperts, endpoints);
            RoutingDecision routing = randomRouting(rnd, numTokens, numExperts, k);

            List<ServerBatch> batches = DispatchPlan.plan(routing, table, layer);
            checkInvariants(ctx, routing, endpoints, batches, hidden);
        }
    }

    /** Same invariants when some experts are replicated on a second server (select picks one hosting server). */
    @Test
    void randomRoutingsWithReplicatedExpertsSatisfyDispatchInvariants() {
        Random rnd = new Random(42);
        for (int trial = 0; trial < 500; trial++) {
            int numExperts = 2 + rnd.nextInt(15);
            int k = 1 + rnd.nextInt(numExperts);
            int numTokens = 1 + rnd.nextInt(50);
            int numServers = 1 + rnd.nextInt(numExperts);
            Strategy strategy = rnd.nextBoolean() ? Strategy.CONTIGUOUS : Strategy.STRIDED;
            List<ExpertEndpoint> endpoints = new ArrayList<>(placement(strategy, numExperts, numServers));
            // an extra server replicating a random non-empty subset of the experts
            int[] hot = java.util.stream.IntStream.range(0, numExperts).filter(e -> rnd.nextInt(3) == 0).toArray();
            if (hot.length == 0) {
                hot = new int[] {rnd.nextInt(numExperts)};
            }
            endpoints.add(endpoint(numServers, hot));
            if (rnd.nextBoolean()) {
                Collections.reverse(endpoints); // replica could be listed first
            }
            ExpertRoutingTable table = ExpertRoutingTable.of(numExperts, endpoints);
            RoutingDecision routing = randomRouting(rnd, numTokens, numExperts, k);

            List<ServerBatch> batches = DispatchPlan.plan(routing, table, 3);
            String ctx = "replicated trial " + trial;
            checkInvariants(ctx, routing, endpoints, batches, 8);
            // every assignment went to the server the table selects for its expert
            for (ServerBatch b : batches) {
                for (int id : b.expertIds()) {
                    assertThat(table.select(id)).as(ctx).isEqualTo(b.endpoint());
                }
            }
        }
    }

    private static void checkInvariants(String ctx, RoutingDecision routing, List<ExpertEndpoint> endpoints,
                                        List<ServerBatch> batches, int hidden) {
        int numTokens = routing.numTokens();
        int k = routing.topK();

        // every batch belongs to a known server, one batch per server, no empty batch
        Set<String> addresses = new HashSet<>();
        for (ServerBatch b : batches) {
            assertThat(endpoints).as(ctx).contains(b.endpoint());
            assertThat(addresses.add(b.endpoint().address())).as(ctx + ": one batch per server").isTrue();
            assertThat(b.tokens()).as(ctx + ": no empty batch").isNotEmpty();
        }

        // expected multiset of assignments
        Map<Assignment, Integer> expected = new HashMap<>();
        for (int t = 0; t < numTokens; t++) {
            for (int j = 0; j < k; j++) {
                expected.merge(Assignment.of(t, routing.expertId(t, j), routing.weight(t, j)), 1, Integer::sum);
            }
        }

        Map<Assignment, Integer> seen = new HashMap<>();
        long rowsSent = 0;
        for (ServerBatch b : batches) {
            int[] tokens = b.tokens();
            int[] counts = b.expertsPerToken();
            int[] ids = b.expertIds();
            float[] weights = b.routingWeights();
            Set<Integer> hosted = new HashSet<>();
            for (int e : b.endpoint().expertIds()) {
                hosted.add(e);
            }

            // (c) parallel arrays consistent; tokens strictly ascending (hence each at most once)
            assertThat(counts).as(ctx).hasSameSizeAs(tokens);
            assertThat(weights).as(ctx).hasSameSizeAs(ids);
            assertThat(Arrays.stream(counts).sum()).as(ctx + ": Σ expertsPerToken").isEqualTo(ids.length);
            for (int i = 1; i < tokens.length; i++) {
                assertThat(tokens[i]).as(ctx + ": tokens strictly ascending").isGreaterThan(tokens[i - 1]);
            }

            int a = 0;
            for (int i = 0; i < tokens.length; i++) {
                int t = tokens[i];
                assertThat(t).as(ctx).isBetween(0, numTokens - 1);
                // (b) at least one of the token's experts is here
                assertThat(counts[i]).as(ctx + ": token " + t + " sent with no expert").isGreaterThanOrEqualTo(1);
                for (int c = 0; c < counts[i]; c++, a++) {
                    int e = ids[a];
                    // (a) on a server that hosts that expert
                    assertThat(hosted).as(ctx + ": expert " + e + " sent to " + b.endpoint()).contains(e);
                    seen.merge(Assignment.of(t, e, weights[a]), 1, Integer::sum);
                }
            }
            rowsSent += tokens.length;
        }
        // (a) every assignment exactly once overall
        assertThat(seen).as(ctx + ": assignments").isEqualTo(expected);

        // (b) a token goes to exactly the servers hosting one of its experts (here: the selected owner)
        Map<Integer, ExpertEndpoint> owner = new HashMap<>();
        for (ServerBatch b : batches) {
            for (int id : b.expertIds()) {
                owner.put(id, b.endpoint());
            }
        }
        long expectedRows = 0;
        for (int t = 0; t < numTokens; t++) {
            Set<String> servers = new HashSet<>();
            for (int j = 0; j < k; j++) {
                servers.add(owner.get(routing.expertId(t, j)).address());
            }
            expectedRows += servers.size();
            for (ServerBatch b : batches) {
                boolean sent = Arrays.binarySearch(b.tokens(), t) >= 0;
                assertThat(sent).as(ctx + ": token " + t + " on " + b.endpoint())
                        .isEqualTo(servers.contains(b.endpoint().address()));
            }
        }
        // (d) rows (and bytes) on the wire
        assertThat(rowsSent).as(ctx + ": rows sent").isEqualTo(expectedRows);
        assertThat(rowsSent * hidden * Float.BYTES).as(ctx + ": bytes sent")
                .isEqualTo(expectedRows * hidden * Float.BYTES);
    }

    /** Rows sent computed purely from the placement (no plan output): Σ_t |distinct owners of t's experts|. */
    @Test
    void rowsSentMatchPlacementOwnersForSingleReplicaPlacements() {
        Random rnd = new Random(7);
        for (int trial = 0; trial < 500; trial++) {
            int numExperts = 1 + rnd.nextInt(16);
            int k = 1 + rnd.nextInt(numExperts);
            int numTokens = 1 + rnd.nextInt(50);
            int numServers = 1 + rnd.nextInt(numExperts);
            Strategy strategy = rnd.nextBoolean() ? Strategy.CONTIGUOUS : Strategy.STRIDED;
            int hidden = 1 + rnd.nextInt(32);
            int[] ownerOf = new int[numExperts];
            Arrays.fill(ownerOf, -1);
            for (int s = 0; s < numServers; s++) {
                for (int e : ExpertPlacement.experts(strategy, numExperts, s, numServers)) {
                    ownerOf[e] = s;
                }
            }
            RoutingDecision routing = randomRouting(rnd, numTokens, numExperts, k);
            long expectedRows = 0;
            for (int t = 0; t < numTokens; t++) {
                Set<Integer> servers = new HashSet<>();
                for (int j = 0; j < k; j++) {
                    servers.add(ownerOf[routing.expertId(t, j)]);
                }
                expectedRows += servers.size();
            }
            List<ServerBatch> batches = DispatchPlan.plan(routing,
                    ExpertRoutingTable.of(numExperts, placement(strategy, numExperts, numServers)), 0);
            long rows = batches.stream().mapToLong(b -> b.tokens().length).sum();
            assertThat(rows * hidden * Float.BYTES).as("trial " + trial)
                    .isEqualTo(expectedRows * hidden * Float.BYTES);
            long assignments = batches.stream().mapToLong(b -> b.expertIds().length).sum();
            assertThat(assignments).isEqualTo((long) numTokens * k);
        }
    }

    @Test
    void smallExampleGroupsTokensPerServer() {
        // server 0 hosts {0,1}, server 1 hosts {2,3}
        ExpertEndpoint s0 = endpoint(0, new int[] {0, 1});
        ExpertEndpoint s1 = endpoint(1, new int[] {2, 3});
        ExpertRoutingTable table = ExpertRoutingTable.of(4, List.of(s0, s1));
        // token 0 → {0,1} (both on s0), token 1 → {1,2} (split), token 2 → {2,3} (both on s1)
        RoutingDecision routing = new RoutingDecision(3, 2, new int[] {0, 1, 1, 2, 2, 3},
                new float[] {0.6f, 0.4f, 0.7f, 0.3f, 0.9f, 0.1f});

        List<ServerBatch> batches = DispatchPlan.plan(routing, table, 1);

        assertThat(batches).hasSize(2);
        ServerBatch b0 = batches.stream().filter(b -> b.endpoint().equals(s0)).findFirst().orElseThrow();
        ServerBatch b1 = batches.stream().filter(b -> b.endpoint().equals(s1)).findFirst().orElseThrow();
        assertThat(b0.tokens()).containsExactly(0, 1);
        assertThat(b0.expertsPerToken()).containsExactly(2, 1);
        assertThat(b0.expertIds()).containsExactly(0, 1, 1);
        assertThat(b0.routingWeights()).containsExactly(0.6f, 0.4f, 0.7f);
        assertThat(b1.tokens()).containsExactly(1, 2);
        assertThat(b1.expertsPerToken()).containsExactly(1, 2);
        assertThat(b1.expertIds()).containsExactly(2, 2, 3);
        assertThat(b1.routingWeights()).containsExactly(0.3f, 0.9f, 0.1f);
    }

    @Test
    void serverHostingNoChosenExpertGetsNoBatch() {
        ExpertEndpoint s0 = endpoint(0, new int[] {0, 1});
        ExpertEndpoint s1 = endpoint(1, new int[] {2, 3});
        ExpertRoutingTable table = ExpertRoutingTable.of(4, List.of(s0, s1));
        RoutingDecision routing = new RoutingDecision(2, 1, new int[] {3, 2}, new float[] {1f, 1f});

        List<ServerBatch> batches = DispatchPlan.plan(routing, table, 0);

        assertThat(batches).hasSize(1);
        assertThat(batches.get(0).endpoint()).isEqualTo(s1);
        assertThat(batches.get(0).tokens()).containsExactly(0, 1);
        assertThat(batches.get(0).expertIds()).containsExactly(3, 2);
    }

    @Test
    void manyTokensAndAssignmentsGrowBuffers() {
        // one server, 40 tokens × 8 experts: exceeds the builder's initial capacity of 16 tokens / assignments
        int numTokens = 40;
        int k = 8;
        int[] ids = new int[numTokens * k];
        float[] w = new float[numTokens * k];
        for (int t = 0; t < numTokens; t++) {
            for (int j = 0; j < k; j++) {
                ids[t * k + j] = j;
                w[t * k + j] = t * 100 + j;
            }
        }
        ExpertRoutingTable table = ExpertRoutingTable.of(8, List.of(endpoint(0, new int[] {0, 1, 2, 3, 4, 5, 6, 7})));
        List<ServerBatch> batches = DispatchPlan.plan(new RoutingDecision(numTokens, k, ids, w), table, 0);

        assertThat(batches).hasSize(1);
        ServerBatch b = batches.get(0);
        assertThat(b.tokens()).hasSize(numTokens);
        for (int t = 0; t < numTokens; t++) {
            assertThat(b.tokens()[t]).isEqualTo(t);
            assertThat(b.expertsPerToken()[t]).isEqualTo(k);
        }
        assertThat(b.expertIds()).isEqualTo(ids);
        assertThat(b.routingWeights()).isEqualTo(w);
    }

    @Test
    void expertWithoutServerIsUnavailableNamingExpertAndLayer() {
        ExpertRoutingTable table = ExpertRoutingTable.of(6, List.of(endpoint(0, new int[] {0, 1, 2}),
                endpoint(1, new int[] {3, 5})));
        // token 1 picks expert 4, which nobody hosts
        RoutingDecision routing = new RoutingDecision(2, 2, new int[] {0, 3, 1, 4}, new float[] {0.5f, 0.5f, 0.5f, 0.5f});

        assertThatThrownBy(() -> DispatchPlan.plan(routing, table, 17))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                    assertThat(e.getStatus().getDescription())
                            .contains("expert 4")
                            .contains("layer 17");
                });
    }

    @Test
    void emptyTableIsUnavailableForFirstExpert() {
        RoutingDecision routing = new RoutingDecision(1, 1, new int[] {2}, new float[] {1f});

        assertThatThrownBy(() -> DispatchPlan.plan(routing, ExpertRoutingTable.empty(4), 5))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                    assertThat(e.getStatus().getDescription()).contains("expert 2").contains("layer 5");
                });
    }
}
