package dev.moe.router.metrics;

/** Scalar, textbook definitions used as the oracle for {@link ExpertLoadMetrics}. */
final class MetricsOracle {
    private MetricsOracle() {
    }

    static double[] normalise(long[] counts) {
        double total = 0;
        for (long c : counts) {
            total += c;
        }
        double[] p = new double[counts.length];
        for (int i = 0; i < counts.length; i++) {
            p[i] = counts[i] / total;
        }
        return p;
    }

    static double log2(double x) {
        return Math.log(x) / Math.log(2);
    }

    /** −Σ p·log2 p / log2 n, with 0·log 0 = 0. */
    static double normalisedEntropy(long[] counts) {
        double[] p = normalise(counts);
        double h = 0;
        for (double pi : p) {
            if (pi > 0) {
                h -= pi * log2(pi);
            }
        }
        return h / log2(counts.length);
    }

    /** KL(p ‖ q) in bits; terms with p = 0 are 0. */
    static double kl(double[] p, double[] q) {
        double d = 0;
        for (int i = 0; i < p.length; i++) {
            if (p[i] > 0) {
                d += p[i] * log2(p[i] / q[i]);
            }
        }
        return d;
    }

    /** JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = (p + q) / 2, in bits. */
    static double jensenShannon(double[] p, double[] q) {
        double[] m = new double[p.length];
        for (int i = 0; i < p.length; i++) {
            m[i] = (p[i] + q[i]) / 2;
        }
        return 0.5 * kl(p, m) + 0.5 * kl(q, m);
    }

    /** mean / max of tokens per server. */
    static double balancedness(long... tokensPerServer) {
        double sum = 0;
        long max = 0;
        for (long t : tokensPerServer) {
            sum += t;
            max = Math.max(max, t);
        }
        return sum / tokensPerServer.length / max;
    }
}
