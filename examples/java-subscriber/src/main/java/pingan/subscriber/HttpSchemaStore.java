package pingan.subscriber;

import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.message.SchemaStore;

/**
 * Avro's {@link SchemaStore} over the bundled schemas and the bus's schema store endpoint
 * ({@code GET /schemas/{fingerprint}}, wire hex). A fetched schema is accepted only when its own
 * fingerprint is the one asked for; fetched schemas are cached (a fingerprint names one schema).
 */
final class HttpSchemaStore implements SchemaStore {
  private final BundledSchemas bundled;
  private final String baseUrl;
  private final HttpClient http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build();
  private final Map<Long, Schema> fetched = new ConcurrentHashMap<>();

  HttpSchemaStore(BundledSchemas bundled, String baseUrl) {
    this.bundled = bundled;
    this.baseUrl = baseUrl.endsWith("/") ? baseUrl.substring(0, baseUrl.length() - 1) : baseUrl;
  }

  @Override
  public Schema findByFingerprint(long fingerprint) {
    Schema known = bundled.byFingerprint().get(fingerprint);
    if (known != null) {
      return known;
    }
    return fetched.computeIfAbsent(fingerprint, this::fetch);
  }

  private Schema fetch(long fingerprint) {
    String url = baseUrl + "/schemas/" + Fingerprints.hex(fingerprint);
    try {
      HttpResponse<String> resp = http.send(HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10)).GET().build(),
          HttpResponse.BodyHandlers.ofString());
      if (resp.statusCode() != 200) {
        return null; // the decoder reports MissingSchemaException
      }
      Schema schema = new Schema.Parser().parse(resp.body());
      if (SchemaNormalization.parsingFingerprint64(schema) != fingerprint) {
        throw new IllegalStateException(url + " returned a schema with another fingerprint");
      }
      return schema;
    } catch (java.io.IOException e) {
      throw new IllegalStateException("cannot fetch " + url + ": " + e, e);
    } catch (InterruptedException e) {
      Thread.currentThread().interrupt();
      throw new IllegalStateException("interrupted fetching " + url, e);
    }
  }

  Map<Long, Schema> fetched() {
    return fetched;
  }
}
