package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicIntegerArray;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** The kernel pool's loops: every unit exactly once, shares taken over by idle threads, failures, concurrent callers. */
class KernelPoolTest {

    @ParameterizedTest(name = "{0} threads")
    @ValueSource(ints = {1, 2, 3, 5})
    void everyUnitRunsExactlyOnceWhateverTheSplit(int threads) {
        try (KernelPool pool = new KernelPool(threads)) {
            // fewer units than threads (empty shares), uneven shares, and many units
            for (int units : new int[] {1, 2, 3, 4, 7, 8, 14, 31, 1000}) {
                AtomicIntegerArray hits = new AtomicIntegerArray(units);
                pool.parallelFor(units, hits::incrementAndGet);
                for (int u = 0; u < units; u++) {
                    assertThat(hits.get(u)).as("unit %d of %d", u, units).isEqualTo(1);
                }
            }
        }
    }

    /**
     * On 2 threads the caller's share is the first half. Its first unit waits until the rest of that half has run,
     * which only the worker can do, by taking over the caller's unclaimed units.
     */
    @Test
    void anIdleThreadTakesOverTheUnclaimedUnitsOfABusyOne() throws InterruptedException {
        try (KernelPool pool = new KernelPool(2)) {
            int units = 10;
            CountDownLatch restOfFirstHalf = new CountDownLatch(units / 2 - 1);
            boolean[] released = new boolean[1];
            AtomicIntegerArray hits = new AtomicIntegerArray(units);
            pool.parallelFor(units, u -> {
                hits.incrementAndGet(u);
                if (u == 0) {
                    try {
                        released[0] = restOfFirstHalf.await(10, TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                } else if (u < units / 2) {
                    restOfFirstHalf.countDown();
                }
            });
            assertThat(released[0]).as("units 1-4 ran while unit 0 waited").isTrue();
            for (int u = 0; u < units; u++) {
                assertThat(hits.get(u)).isEqualTo(1);
            }
        }
    }

    @Test
    void aFailingUnitFailsTheLoopAndThePoolKeepsServing() {
        try (KernelPool pool = new KernelPool(2)) {
            int[] hits = new int[1000];
            pool.parallelFor(hits.length, u -> hits[u]++);
            assertThat(hits).containsOnly(1);
            assertThatThrownBy(() -> pool.parallelFor(10, u -> {
                if (u == 7) {
                    throw new IllegalStateException("unit 7 failed");
                }
            })).hasMessage("unit 7 failed");
            pool.parallelFor(3, u -> hits[u]++);
            assertThat(hits[0]).isEqualTo(2);
            assertThat(hits[3]).isEqualTo(1);
        }
    }

    @Test
    void concurrentCallersEachGetAllTheirUnits() throws Exception {
        try (KernelPool pool = new KernelPool(2); ExecutorService callers = Executors.newFixedThreadPool(3)) {
            List<Future<int[]>> results = new ArrayList<>();
            for (int c = 0; c < 3; c++) {
                int units = 5 + c * 6; // 5, 11, 17: different splits per caller
                results.add(callers.submit(() -> {
                    int[] hits = new int[units];
                    for (int loop = 0; loop < 300; loop++) {
                        pool.parallelFor(units, u -> hits[u]++);
                    }
                    return hits;
                }));
            }
            for (Future<int[]> r : results) {
                assertThat(r.get(60, TimeUnit.SECONDS)).containsOnly(300);
            }
        }
    }

    @Test
    void rejectsAPoolWithoutThreads() {
        assertThatThrownBy(() -> new KernelPool(0)).hasMessageContaining("kernel threads must be >= 1, got 0");
    }
}
