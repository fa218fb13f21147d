package pingan.subscriber;

import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import org.apache.avro.Schema;
import org.apache.avro.generic.GenericData;
import org.apache.avro.generic.GenericRecord;
import org.apache.avro.message.BinaryMessageDecoder;
import org.apache.avro.message.BinaryMessageEncoder;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringDeserializer;

/**
 * Reads the downstream topics of Ping'an Bus from the beginning to their current end and decodes every
 * value (Avro single-object encoding) with the bundled released schemas as reader schemas; a writer
 * schema it does not bundle is fetched by fingerprint from the bus's schema store over HTTP.
 *
 * <p>Usage: {@code java -jar target/pingan-subscriber.jar --bootstrap 127.0.0.1:19092
 * --schema-store http://127.0.0.1:8080 [--prefix P] [--topics incidents.v1,escalations.v1,...]
 * [--timeout-s 60]}
 *
 * <p>Output, one line per record, tab-separated: {@code REC topic partition offset key schema
 * fingerprintHex fingerprintLong origin(bundled|fetched) reencodedSame(yes|no|-) json}, errors as
 * {@code ERR topic partition offset message}, and a final {@code DONE records errors fetched}.
 */
public final class Subscriber {

  /** The downstream topics and their value schemas (docs/contracts.md). */
  static final Map<String, String> TOPICS = Map.of(
      "incidents.v1", "pingan.Incident",
      "incident-members.v1", "pingan.IncidentMember",
      "escalations.v1", "pingan.Escalation",
      "links.v1", "pingan.Link",
      "events.v1", "pingan.Event",
      "dispositions.v1", "pingan.Disposition");

  private Subscriber() {}

  public static void main(String[] args) throws Exception {
    Map<String, String> opts = parse(args);
    PrintStream out = new PrintStream(System.out, true, StandardCharsets.UTF_8);
    BundledSchemas bundled = BundledSchemas.load();
    if (opts.containsKey("--list-bundled")) {
      bundled.byName().forEach((name, schema) -> out.println("BUNDLED\t" + name + "\t"
          + Fingerprints.hex(bundled.fingerprintOf(name)) + "\t" + bundled.fingerprintOf(name)));
      return;
    }
    HttpSchemaStore store = new HttpSchemaStore(bundled, opts.getOrDefault("--schema-store", "http://127.0.0.1:8080"));
    String prefix = opts.getOrDefault("--prefix", "");
    List<String> topics = Arrays.asList(opts.getOrDefault("--topics", String.join(",", TOPICS.keySet())).split(","));
    long timeoutMs = (long) (Double.parseDouble(opts.getOrDefault("--timeout-s", "60")) * 1000);

    Map<String, BinaryMessageDecoder<GenericRecord>> decoders = new HashMap<>();
    for (String topic : topics) {
      Schema reader = bundled.byName().get(TOPICS.get(topic));
      if (reader == null) {
        throw new IllegalArgumentException("not a downstream topic: " + topic);
      }
      // the decoder knows its reader schema; every other writer schema comes from the store
      BinaryMessageDecoder<GenericRecord> decoder = new BinaryMessageDecoder<>(GenericData.get(), reader, store);
      decoders.put(prefix + topic, decoder);
    }

    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, opts.getOrDefault("--bootstrap", "127.0.0.1:19092"));
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.CLIENT_ID_CONFIG, "pingan-java-subscriber");
    props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    long records = 0;
    long errors = 0;
    try (KafkaConsumer<String, byte[]> consumer =
        new KafkaConsumer<>(props, new StringDeserializer(), new ByteArrayDeserializer())) {
      List<TopicPartition> tps = new ArrayList<>();
      for (String topic : decoders.keySet()) {
        for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(15))) {
          tps.add(new TopicPartition(topic, p.partition()));
        }
      }
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
      Map<TopicPartition, Long> ends = consumer.endOffsets(tps);
      long deadline = System.currentTimeMillis() + timeoutMs;
      while (!done(consumer, ends) && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, byte[]> r : consumer.poll(Duration.ofMillis(500))) {
          records++;
          String where = r.topic() + "\t" + r.partition() + "\t" + r.offset();
          if (r.value() == null) {
            out.println("TOMBSTONE\t" + where + "\t" + r.key());
            continue;
          }
          try {
            out.println(describe(r, decoders.get(r.topic()), bundled, store));
          } catch (Exception e) {
            errors++;
            out.println("ERR\t" + where + "\t" + e.getClass().getSimpleName() + ": " + e.getMessage());
          }
        }
      }
      if (!done(consumer, ends)) {
        errors++;
        out.println("ERR\t-\t-\t-\ttimed out before the end offsets " + ends);
      }
    }
    out.println("DONE\t" + records + "\t" + errors + "\t" + store.fetched().size());
    System.exit(errors == 0 ? 0 : 1);
  }

  static String describe(ConsumerRecord<String, byte[]> r, BinaryMessageDecoder<GenericRecord> decoder,
      BundledSchemas bundled, HttpSchemaStore store) throws Exception {
    byte[] value = r.value();
    long fp = ByteBuffer.wrap(value, 2, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
    GenericRecord record = decoder.decode(value);
    String origin = bundled.byFingerprint().containsKey(fp) ? "bundled" : "fetched";
    String same = "-";
    if (fp == bundled.fingerprintOf(record.getSchema().getFullName())) {
      // written with the reader's own schema: encoding it again gives the same bytes
      byte[] again = new BinaryMessageEncoder<GenericRecord>(GenericData.get(), record.getSchema()).encode(record).array();
      same = Arrays.equals(again, value) ? "yes" : "no";
    }
    return String.join("\t", "REC", r.topic(), String.valueOf(r.partition()), String.valueOf(r.offset()),
        String.valueOf(r.key()), record.getSchema().getFullName(), Fingerprints.hex(fp), String.valueOf(fp),
        origin, same, GenericData.get().toString(record));
  }

  static boolean done(KafkaConsumer<?, ?> consumer, Map<TopicPartition, Long> ends) {
    for (Map.Entry<TopicPartition, Long> e : ends.entrySet()) {
      if (consumer.position(e.getKey()) < e.getValue()) {
        return false;
      }
    }
    return true;
  }

  static Map<String, String> parse(String[] args) {
    Map<String, String> opts = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      if (args[i].equals("--list-bundled")) {
        opts.put(args[i], "");
      } else if (args[i].startsWith("--") && i + 1 < args.length) {
        opts.put(args[i], args[++i]);
      } else {
        throw new IllegalArgumentException("unexpected argument " + args[i]);
      }
    }
    return opts;
  }
}
