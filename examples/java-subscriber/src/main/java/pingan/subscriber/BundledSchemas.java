package pingan.subscriber;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.TreeMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;

/**
 * The released schemas bundled on the class path ({@code pingan/schemas/}, from schemas/released/vN):
 * one {@link Schema.Parser} reads the files in the order of {@code load-order.txt}, because the files
 * refer to each other's types by full name (a type must be parsed before a file that uses it).
 */
final class BundledSchemas {
  private final Map<String, Schema> byName;
  private final Map<Long, Schema> byFingerprint;

  private BundledSchemas(Map<String, Schema> byName) {
    this.byName = byName;
    this.byFingerprint = new HashMap<>();
    byName.values().forEach(s -> byFingerprint.put(SchemaNormalization.parsingFingerprint64(s), s));
  }

  static BundledSchemas load() throws IOException {
    Schema.Parser parser = new Schema.Parser();
    Map<String, Schema> byName = new TreeMap<>();
    for (String file : resource("load-order.txt").split("\n")) {
      if (!file.isBlank()) {
        Schema schema = parser.parse(resource(file.strip()));
        byName.put(schema.getFullName(), schema);
      }
    }
    return new BundledSchemas(byName);
  }

  private static String resource(String name) throws IOException {
    try (InputStream in = BundledSchemas.class.getClassLoader().getResourceAsStream("pingan/schemas/" + name)) {
      if (in == null) {
        throw new IOException("missing bundled schema resource pingan/schemas/" + name);
      }
      return new String(in.readAllBytes(), StandardCharsets.UTF_8);
    }
  }

  Map<String, Schema> byName() {
    return byName;
  }

  Map<Long, Schema> byFingerprint() {
    return byFingerprint;
  }

  long fingerprintOf(String name) {
    Schema s = byName.get(name);
    return s == null ? 0L : SchemaNormalization.parsingFingerprint64(s);
  }
}
