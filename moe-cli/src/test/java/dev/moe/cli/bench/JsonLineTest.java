package dev.moe.cli.bench;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class JsonLineTest {

    private static String number(double value, int decimals) {
        String line = new JsonLine().put("v", value, decimals).toString();
        return line.substring(line.indexOf(':') + 1, line.length() - 1);
    }

    @Test
    void numbersKeepAtMostTheirDecimalsWithoutTrailingZeros() {
        assertThat(number(1.23456, 2)).isEqualTo("1.23");
        assertThat(number(2.5, 3)).isEqualTo("2.5");
        assertThat(number(3, 2)).isEqualTo("3.0");
        assertThat(number(0, 2)).isEqualTo("0.0");
        assertThat(number(-0.0, 2)).isEqualTo("0.0");
        assertThat(number(Double.NaN, 2)).isEqualTo("null");
        assertThat(number(Double.POSITIVE_INFINITY, 2)).isEqualTo("null");
    }

    @Test
    void smallNonZeroValuesKeepThreeSignificantDigitsInsteadOfBecomingZero() {
        // e.g. GB/s of a tiny benchmark shape on a loaded machine
        assertThat(number(0.0042137, 2)).isEqualTo("0.00421");
        assertThat(number(0.000012, 3)).isEqualTo("0.000012");
        assertThat(number(-0.0001, 2)).isEqualTo("-0.0001");
        assertThat(Double.parseDouble(number(0.0042137, 2))).isPositive();
    }
}
