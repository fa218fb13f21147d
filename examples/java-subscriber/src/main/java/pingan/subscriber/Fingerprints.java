package pingan.subscriber;

/** The two notations of a CRC-64-AVRO fingerprint. */
final class Fingerprints {
  private Fingerprints() {}

  /** Wire notation: the 8 header bytes (little-endian) as 16 hex digits, as the bus's docs print them. */
  static String hex(long fp) {
    StringBuilder sb = new StringBuilder(16);
    for (int i = 0; i < 8; i++) {
      sb.append(String.format("%02x", (fp >>> (8 * i)) & 0xff));
    }
    return sb.toString();
  }
}
