package dev.moe.core.sparsity;

/**
 * A streaming histogram of signed float32 activations in bounded memory (about 64 KiB whatever the number of values),
 * fine enough to read off the thresholds of SCAP: quantiles of {@code |v − m|} and the mode of the distribution.
 *
 * <p>Bins follow the float encoding: every binary octave {@code [2^e, 2^(e+1))} of the magnitude, for e in
 * [{@value #MIN_EXPONENT}, {@value #MAX_EXPONENT}), is split into {@value #SUB_BINS} equal bins (the top six mantissa
 * bits), so each bin is 0.8–1.6 % of its magnitude wide, on both signs. Magnitudes below 2^{@value #MIN_EXPONENT}
 * (±0, subnormals) share one bin taken as a point mass at 0; magnitudes from 2^{@value #MAX_EXPONENT} up go to one
 * overflow bin per sign, bounded by the largest value seen. Inside a bin values are taken as evenly spread (linear
 * interpolation of the empirical distribution function), and the extreme bins are clipped to the observed minimum and
 * maximum.
 */
public final class ActivationHistogram {
    /** Smallest magnitude octave binned separately; below it a value counts as zero. */
    public static final int MIN_EXPONENT = -40;
    /** Octaves from here up share one overflow bin per sign. */
    public static final int MAX_EXPONENT = 24;
    /** Bins per octave. */
    public static final int SUB_BINS = 64;
    private static final int SUB_BITS = 6;
    /** Bins per sign: the octaves plus the overflow bin. */
    private static final int PER_SIGN = (MAX_EXPONENT - MIN_EXPONENT) * SUB_BINS + 1;
    private static final int ZERO = PER_SIGN;
    private static final double ZERO_EDGE = Math.scalb(1.0, MIN_EXPONENT);
    private static final double OVERFLOW_EDGE = Math.scalb(1.0, MAX_EXPONENT);

    /** Counts in ascending value order: negative bins (largest magnitude first), the zero bin, positive bins. */
    private final long[] counts = new long[2 * PER_SIGN + 1];
    private long total;
    private double sum;
    private double sumSquares;
    private float min = Float.POSITIVE_INFINITY;
    private float max = Float.NEGATIVE_INFINITY;
    /** Running sums of {@code counts}, rebuilt lazily after additions; {@code prefix[i]} = values in bins below i. */
    private long[] prefix;

    /**
     * Adds {@code values[offset, offset + length)}.
     *
     * @throws IllegalArgumentException on NaN or infinity, naming the index; nothing is added then
     */
    public void add(float[] values, int offset, int length) {
        double s = 0;
        double s2 = 0;
        float lo = min;
        float hi = max;
        for (int i = offset; i < offset + length; i++) {
            float v = values[i];
            int bits = Float.floatToRawIntBits(v);
            int biased = (bits >>> 23) & 0xFF;
            if (biased == 0xFF) {
                for (int j = offset; j < i; j++) { // leave the histogram as it was
                    int b = Float.floatToRawIntBits(values[j]);
                    counts[bin(b, (b >>> 23) & 0xFF)]--;
                }
                throw new IllegalArgumentException("non-finite value " + v + " at index " + i);
            }
            counts[bin(bits, biased)]++;
            s += v;
            s2 += (double) v * v;
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
        }
        total += length;
        sum += s;
        sumSquares += s2;
        min = lo;
        max = hi;
        prefix = null;
    }

    private static int bin(int bits, int biased) {
        int exponent = biased - 127;
        int magnitudeBin;
        if (exponent < MIN_EXPONENT) {
            return ZERO;
        } else if (exponent >= MAX_EXPONENT) {
            magnitudeBin = PER_SIGN - 1;
        } else {
            magnitudeBin = (exponent - MIN_EXPONENT) * SUB_BINS + ((bits >>> (23 - SUB_BITS)) & (SUB_BINS - 1));
        }
        return bits < 0 ? ZERO - 1 - magnitudeBin : ZERO + 1 + magnitudeBin;
    }

    /** The bin of a double, consistent with {@link #bin(int, int)} for every float. */
    private static int binOf(double t) {
        double a = Math.abs(t);
        int magnitudeBin;
        if (a < ZERO_EDGE) {
            return ZERO;
        } else if (a >= OVERFLOW_EDGE) {
            magnitudeBin = PER_SIGN - 1;
        } else {
            int exponent = Math.getExponent(a);
            int sub = (int) ((Math.scalb(a, -exponent) - 1.0) * SUB_BINS); // exact: scaling by a power of two
            magnitudeBin = (exponent - MIN_EXPONENT) * SUB_BINS + sub;
        }
        return t < 0 ? ZERO - 1 - magnitudeBin : ZERO + 1 + magnitudeBin;
    }

    /** Lower magnitude edge of a magnitude bin (0 = 2^MIN_EXPONENT). */
    private static double magnitudeLow(int magnitudeBin) {
        int exponent = MIN_EXPONENT + magnitudeBin / SUB_BINS;
        return Math.scalb(1.0 + (double) (magnitudeBin % SUB_BINS) / SUB_BINS, exponent);
    }

    private double magnitudeHigh(int magnitudeBin) {
        return magnitudeBin == PER_SIGN - 1 ? Math.max(OVERFLOW_EDGE, Math.max(-min, max))
                : magnitudeLow(magnitudeBin + 1);
    }

    /** Lowest value of bin i, clipped to the observed range. */
    private double lower(int i) {
        double edge;
        if (i == ZERO) {
            edge = 0; // the zero bin is a point mass at 0
        } else if (i > ZERO) {
            edge = magnitudeLow(i - ZERO - 1);
        } else {
            edge = -magnitudeHigh(ZERO - 1 - i);
        }
        return Math.max(edge, min);
    }

    /** Highest value of bin i, clipped to the observed range. */
    private double upper(int i) {
        double edge;
        if (i == ZERO) {
            edge = 0;
        } else if (i > ZERO) {
            edge = magnitudeHigh(i - ZERO - 1);
        } else {
            edge = -magnitudeLow(ZERO - 1 - i);
        }
        return Math.min(edge, max);
    }

    private long[] prefix() {
        if (prefix == null) {
            long[] p = new long[counts.length + 1];
            for (int i = 0; i < counts.length; i++) {
                p[i + 1] = p[i] + counts[i];
            }
            prefix = p;
        }
        return prefix;
    }

    /** Values added. */
    public long count() {
        return total;
    }

    public float min() {
        return min;
    }

    public float max() {
        return max;
    }

    public double mean() {
        return total == 0 ? 0 : sum / total;
    }

    public double standardDeviation() {
        if (total == 0) {
            return 0;
        }
        double m = sum / total;
        return Math.sqrt(Math.max(0, sumSquares / total - m * m));
    }

    /** Estimated number of values {@code <= t} (interpolated inside t's bin). */
    public double countAtOrBelow(double t) {
        if (total == 0 || t < min) {
            return 0;
        }
        if (t >= max) {
            return total;
        }
        int i = binOf(t);
        long[] p = prefix();
        double lo = lower(i);
        double hi = upper(i);
        double fraction = hi > lo ? Math.clamp((t - lo) / (hi - lo), 0.0, 1.0) : (t >= lo ? 1.0 : 0.0);
        return p[i] + counts[i] * fraction;
    }

    /** Estimated fraction of values v with {@code |v − m| <= tau}. */
    public double fractionWithin(double m, double tau) {
        if (total == 0) {
            return 0;
        }
        // The interval is closed: a point mass at exactly m − tau (exact zeros, a constant) belongs to it.
        double below = countAtOrBelow(m - tau) - massAt(m - tau);
        return Math.clamp((countAtOrBelow(m + tau) - below) / total, 0.0, 1.0);
    }

    /** Values in the bin of t when that bin is a single point equal to t (the zero bin, a constant), else 0. */
    private double massAt(double t) {
        if (t < min || t > max) {
            return 0;
        }
        int i = binOf(t);
        return lower(i) == upper(i) && lower(i) == t ? counts[i] : 0;
    }

    /** The value below which a fraction p of the values lie (interpolated). */
    public double quantile(double p) {
        if (total == 0) {
            return 0;
        }
        double target = Math.clamp(p, 0.0, 1.0) * total;
        long[] pre = prefix();
        for (int i = 0; i < counts.length; i++) {
            if (counts[i] > 0 && pre[i + 1] >= target) {
                double lo = lower(i);
                double hi = upper(i);
                return lo + (hi - lo) * Math.clamp((target - pre[i]) / counts[i], 0.0, 1.0);
            }
        }
        return max;
    }

    /**
     * The smallest {@code tau >= 0} with {@link #fractionWithin}{@code (m, tau) >= p}: the p-quantile of
     * {@code |v − m|}. 0 for p = 0 or no values.
     */
    public double quantileOfDeviation(double m, double p) {
        if (total == 0 || p <= 0) {
            return 0;
        }
        double lo = 0;
        double hi = Math.max(Math.abs(max - m), Math.abs(m - min));
        if (fractionWithin(m, lo) >= p) {
            return 0;
        }
        for (int iteration = 0; iteration < 200 && hi - lo > Math.ulp(hi); iteration++) {
            double mid = 0.5 * (lo + hi);
            if (fractionWithin(m, mid) >= p) {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        return hi;
    }

    /**
     * The mode: the peak of a kernel density estimate. The kernel is three box filters in a row (a smooth, nearly
     * Gaussian bump of standard deviation {@code bw}), with {@code bw = 0.9 · min(σ, IQR/1.34) · n^(-1/7)}:
     * Silverman's robust spread, at the n^(-1/7) rate that suits locating a peak (a density-estimation bandwidth,
     * n^(-1/5), leaves the argmax noisy). It is evaluated on a grid of bw/8 steps covering the 0.5 %–99.5 %
     * quantiles; ties go to the value nearest zero. A symmetric peak stays where it is; a skewed one is pulled slightly toward its longer side.
     * 0 when empty.
     */
    public double mode() {
        if (total == 0) {
            return 0;
        }
        if (min == max) {
            return min;
        }
        double sigma = standardDeviation();
        double iqr = quantile(0.75) - quantile(0.25);
        double spread = iqr > 0 ? Math.min(sigma, iqr / 1.34) : sigma;
        double bw = 0.9 * spread * Math.pow(total, -1.0 / 7);
        double from = quantile(0.005);
        double to = quantile(0.995);
        if (!(bw > 0) || !(to > from)) {
            return quantile(0.5);
        }
        // Grid padded by 2·bw on each side so the two moving averages see full windows inside [from, to].
        double lo = from - 2 * bw;
        double hi = to + 2 * bw;
        int points = (int) Math.min(MAX_MODE_GRID, Math.ceil((hi - lo) / (bw / 8)) + 1);
        double step = (hi - lo) / (points - 1);
        int window = Math.max(1, (int) Math.round(bw / step));
        // First box, exactly from the distribution function: mass within ±bw of each grid point.
        double[] density = new double[points];
        for (int i = 0; i < points; i++) {
            double m = lo + i * step;
            density[i] = countAtOrBelow(m + bw) - countAtOrBelow(m - bw);
        }
        density = movingAverage(movingAverage(density, window), window);
        double best = Double.NaN;
        double bestDensity = -1;
        for (int i = 0; i < points; i++) {
            double m = lo + i * step;
            if (m < from || m > to) {
                continue;
            }
            if (density[i] > bestDensity || (density[i] == bestDensity && Math.abs(m) < Math.abs(best))) {
                bestDensity = density[i];
                best = m;
            }
        }
        return Double.isNaN(best) ? quantile(0.5) : best;
    }

    private static final int MAX_MODE_GRID = 50_000;

    /** Mean over {@code [i − w, i + w]}, clipped at the ends. */
    private static double[] movingAverage(double[] v, int w) {
        double[] prefix = new double[v.length + 1];
        for (int i = 0; i < v.length; i++) {
            prefix[i + 1] = prefix[i] + v[i];
        }
        double[] out = new double[v.length];
        for (int i = 0; i < v.length; i++) {
            int a = Math.max(0, i - w);
            int b = Math.min(v.length, i + w + 1);
            out[i] = (prefix[b] - prefix[a]) / (b - a);
        }
        return out;
    }
}
