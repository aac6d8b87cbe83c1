import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Random;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Scenario 3: Java kafka-clients. A KafkaProducer with default configs (so idempotence is on)
 * and acks=all sends keyed records with headers and keeps each RecordMetadata; a KafkaConsumer
 * without a group, by assign() + seekToBeginning(), reads every record back and compares
 * partition, offset, key, value and headers byte for byte.
 *
 * <p>usage: RoundTrip BOOTSTRAP TOPIC — prints 'PASS java-roundtrip' or 'FAIL java-roundtrip: why'.
 */
public final class RoundTrip {
  static final String NAME = "java-roundtrip";
  static final int COUNT = 500;

  record Sent(byte[] key, byte[] value, Header[] headers, RecordMetadata meta) {}

  public static void main(String[] args) {
    String failure;
    try {
      failure = run(args[0], args[1]);
    } catch (Exception e) {
      Throwable root = e;
      while (root.getCause() != null) root = root.getCause();
      failure = e + (root != e ? " (cause: " + root + ")" : "");
    }
    System.out.println(failure == null ? "PASS " + NAME : "FAIL " + NAME + ": " + failure.replace('\n', ' '));
    System.exit(failure == null ? 0 : 1);
  }

  static String run(String bootstrap, String topic) throws Exception {
    List<Sent> sent = produce(bootstrap, topic);
    Map<TopicPartition, Map<Long, Sent>> expected = new HashMap<>();
    for (Sent s : sent) {
      TopicPartition tp = new TopicPartition(topic, s.meta.partition());
      expected.computeIfAbsent(tp, k -> new HashMap<>()).put(s.meta.offset(), s);
    }
    if (expected.size() < 2) return "all records went to " + expected.keySet() + "; expected keys spread";
    return consume(bootstrap, topic, expected);
  }

  static List<Sent> produce(String bootstrap, String topic) throws Exception {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    Random rng = new Random(3);
    List<byte[][]> records = new ArrayList<>();
    List<Future<RecordMetadata>> futures = new ArrayList<>();
    List<Header[]> headers = new ArrayList<>();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < COUNT; i++) {
        byte[] key = ("java-" + i).getBytes(StandardCharsets.UTF_8);
        byte[] value = new byte[1 + rng.nextInt(2000)];
        if (i % 2 == 0) rng.nextBytes(value);
        else Arrays.fill(value, (byte) ('a' + i % 26)); // compressible, binary-safe either way
        RecordHeaders h = new RecordHeaders();
        h.add("i", Integer.toString(i).getBytes(StandardCharsets.UTF_8));
        h.add("bin", new byte[] {0, (byte) 255, (byte) i, 10});
        records.add(new byte[][] {key, value});
        headers.add(h.toArray());
        futures.add(producer.send(new ProducerRecord<>(topic, null, key, value, h)));
      }
      producer.flush();
      List<Sent> sent = new ArrayList<>();
      for (int i = 0; i < COUNT; i++) {
        RecordMetadata meta = futures.get(i).get(60, TimeUnit.SECONDS);
        sent.add(new Sent(records.get(i)[0], records.get(i)[1], headers.get(i), meta));
      }
      return sent;
    }
  }

  static String consume(String bootstrap, String topic, Map<TopicPartition, Map<Long, Sent>> expected) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    try (KafkaConsumer<byte[], byte[]> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> all = new ArrayList<>();
      for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(30))) {
        all.add(new TopicPartition(topic, p.partition()));
      }
      consumer.assign(all);
      consumer.seekToBeginning(all);
      Map<TopicPartition, Long> end = new HashMap<>();
      for (Map.Entry<TopicPartition, Map<Long, Sent>> e : expected.entrySet()) {
        end.put(e.getKey(), e.getValue().keySet().stream().max(Long::compare).get() + 1);
      }
      Map<TopicPartition, Long> next = new HashMap<>();
      int matched = 0;
      long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
      while (matched < COUNT && System.nanoTime() < deadline) {
        for (ConsumerRecord<byte[], byte[]> r : consumer.poll(Duration.ofMillis(500))) {
          TopicPartition tp = new TopicPartition(r.topic(), r.partition());
          Long prev = next.put(tp, r.offset() + 1);
          if (prev != null && r.offset() < prev) return tp + ": offset " + r.offset() + " after " + (prev - 1);
          Sent s = expected.getOrDefault(tp, Map.of()).get(r.offset());
          if (s == null) return tp + "@" + r.offset() + ": read a record that was never acknowledged";
          if (!Arrays.equals(s.key, r.key())) return tp + "@" + r.offset() + ": key differs";
          if (!Arrays.equals(s.value, r.value())) return tp + "@" + r.offset() + ": value differs";
          Header[] got = r.headers().toArray();
          if (got.length != s.headers.length) return tp + "@" + r.offset() + ": " + got.length + " headers";
          for (int i = 0; i < got.length; i++) {
            if (!got[i].key().equals(s.headers[i].key()) || !Arrays.equals(got[i].value(), s.headers[i].value())) {
              return tp + "@" + r.offset() + ": header " + i + " differs";
            }
          }
          matched++;
        }
      }
      if (matched < COUNT) {
        return "read back " + matched + "/" + COUNT + " records in 60 s; positions " + next + ", expected ends " + end;
      }
      return null;
    }
  }
}
