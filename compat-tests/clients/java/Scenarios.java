import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Random;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Supplier;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.CloseOptions;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.OffsetAndTimestamp;
import org.apache.kafka.clients.consumer.OffsetOutOfRangeException;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.InvalidProducerEpochException;
import org.apache.kafka.common.errors.InvalidTopicException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.RecordTooLargeException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.header.internals.RecordHeader;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The `java` family of the compatibility matrix (compat-tests/clients/CONTRACT.md): Apache
 * Kafka's Java kafka-clients (KafkaProducer, KafkaConsumer, Admin) run the contract's scenarios.
 *
 * <p>usage: Scenarios BOOTSTRAP [SCENARIO...] — prints exactly one line per scenario on stdout:
 * {@code PASS name} or {@code FAIL name: reason}. Kafka's own logging goes to stderr.
 */
public final class Scenarios {
  static final String FAMILY = "java";
  static final long SCENARIO_TIMEOUT_S = 90;
  /** How long a read-back waits for records that should be there. */
  static final Duration READ_DEADLINE = Duration.ofSeconds(30);

  /** A scenario's failure, with the one-line reason printed after "FAIL name: ". */
  static final class Failure extends Exception {
    Failure(String reason) {
      super(reason);
    }
  }

  interface Scenario {
    void run(Ctx ctx) throws Exception;
  }

  static final Map<String, Scenario> SCENARIOS = new LinkedHashMap<>();

  static {
    SCENARIOS.put("metadata", Scenarios::metadata);
    SCENARIOS.put("produce-acks-0", ctx -> produceAcks(ctx, "0"));
    SCENARIOS.put("produce-acks-1", ctx -> produceAcks(ctx, "1"));
    SCENARIOS.put("produce-acks-all", ctx -> produceAcks(ctx, "all"));
    SCENARIOS.put("compression-gzip", ctx -> compression(ctx, "gzip"));
    SCENARIOS.put("compression-snappy", ctx -> compression(ctx, "snappy"));
    SCENARIOS.put("compression-lz4", ctx -> compression(ctx, "lz4"));
    SCENARIOS.put("compression-zstd", ctx -> compression(ctx, "zstd"));
    SCENARIOS.put("keys-headers-nulls", Scenarios::keysHeadersNulls);
    SCENARIOS.put("large-message", Scenarios::largeMessage);
    SCENARIOS.put("consume-beginning", Scenarios::consumeBeginning);
    SCENARIOS.put("consume-offset", Scenarios::consumeOffset);
    SCENARIOS.put("consume-timestamp", Scenarios::consumeTimestamp);
    SCENARIOS.put("consume-end", Scenarios::consumeEnd);
    SCENARIOS.put("idempotent", Scenarios::idempotent);
    SCENARIOS.put("group-rebalance", Scenarios::groupRebalance);
    SCENARIOS.put("commit-resume", Scenarios::commitResume);
    SCENARIOS.put("admin-topics", Scenarios::adminTopics);
    SCENARIOS.put("admin-configs", Scenarios::adminConfigs);
    SCENARIOS.put("delete-records", Scenarios::deleteRecords);
    SCENARIOS.put("error-unknown-topic", Scenarios::errorUnknownTopic);
    SCENARIOS.put("error-invalid-topic", Scenarios::errorInvalidTopic);
    SCENARIOS.put("error-too-large", Scenarios::errorTooLarge);
    SCENARIOS.put("error-out-of-range", Scenarios::errorOutOfRange);
    SCENARIOS.put("transactions", Scenarios::transactions);
  }

  public static void main(String[] args) {
    if (args.length < 1) {
      System.err.println("usage: Scenarios BOOTSTRAP [SCENARIO...]");
      System.exit(2);
    }
    String bootstrap = args[0];
    List<String> names = args.length > 1 ? Arrays.asList(args).subList(1, args.length) : new ArrayList<>(SCENARIOS.keySet());
    for (String name : names) {
      if (!SCENARIOS.containsKey(name)) {
        System.err.println("unknown scenario '" + name + "'; known: " + SCENARIOS.keySet());
        System.exit(2);
      }
    }
    for (String name : names) {
      String failure = runBounded(name, bootstrap);
      System.out.println(failure == null ? "PASS " + name : "FAIL " + name + ": " + failure);
      System.out.flush();
    }
    // A scenario that timed out may have left a client thread behind: do not wait for it.
    System.exit(0);
  }

  /** Runs one scenario on its own thread, bounded by SCENARIO_TIMEOUT_S; null when it passed. */
  static String runBounded(String name, String bootstrap) {
    ExecutorService executor = Executors.newSingleThreadExecutor(r -> {
      Thread t = new Thread(r, "scenario-" + name);
      t.setDaemon(true);
      return t;
    });
    long started = System.nanoTime();
    System.err.println("== java " + name);
    try {
      Future<?> done = executor.submit(() -> {
        SCENARIOS.get(name).run(new Ctx(bootstrap, name));
        return null;
      });
      done.get(SCENARIO_TIMEOUT_S, TimeUnit.SECONDS);
      return null;
    } catch (TimeoutException e) {
      return "did not finish within " + SCENARIO_TIMEOUT_S + " s";
    } catch (ExecutionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof Failure) return oneLine(cause.getMessage());
      return oneLine(describe(cause));
    } catch (InterruptedException e) {
      return "interrupted";
    } finally {
      executor.shutdownNow();
      System.err.printf("== java %s: %.1f s%n", name, (System.nanoTime() - started) / 1e9);
    }
  }

  static String oneLine(String text) {
    String line = String.valueOf(text).replaceAll("\\s+", " ").trim();
    return line.length() > 500 ? line.substring(0, 500) + "..." : line;
  }

  /** An exception as "Class: message", with its root cause when that is another one. */
  static String describe(Throwable e) {
    if (e instanceof ExecutionException && e.getCause() != null) e = e.getCause();
    Throwable root = e;
    while (root.getCause() != null && root.getCause() != root) root = root.getCause();
    String text = e.getClass().getSimpleName() + ": " + e.getMessage();
    if (root != e) text += " (cause: " + root.getClass().getSimpleName() + ": " + root.getMessage() + ")";
    return text;
  }

  static void check(boolean condition, Supplier<String> reason) throws Failure {
    if (!condition) throw new Failure(reason.get());
  }

  // ---------------------------------------------------------------------------------------
  // Clients and topics

  /** One scenario's bootstrap and names; it creates clients with bounded timeouts. */
  static final class Ctx {
    final String bootstrap;
    final String scenario;
    final String suffix = Long.toString(System.currentTimeMillis(), 36) + "-" + Integer.toString(new Random().nextInt(1 << 30), 36);
    int names;

    Ctx(String bootstrap, String scenario) {
      this.bootstrap = bootstrap;
      this.scenario = scenario;
    }

    /** compat-java-<scenario>-<suffix>[-n]: a name the broker has never seen. */
    String name() {
      String name = "compat-" + FAMILY + "-" + scenario + "-" + suffix;
      return names++ == 0 ? name : name + "-" + names;
    }

    Admin admin() {
      Properties p = new Properties();
      p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
      p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
      return Admin.create(p);
    }

    /** A plain producer (idempotence off unless `extra` turns it on) of byte arrays. */
    KafkaProducer<byte[], byte[]> producer(String... extra) {
      Properties p = new Properties();
      p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      p.put(ProducerConfig.ACKS_CONFIG, "all");
      p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
      p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
      p.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
      p.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "45000");
      p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
      putPairs(p, extra);
      return new KafkaProducer<>(p, new ByteArraySerializer(), new ByteArraySerializer());
    }

    /** A consumer of byte arrays: without a group unless `extra` names one; no auto-commit. */
    KafkaConsumer<byte[], byte[]> consumer(String... extra) {
      Properties p = new Properties();
      p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
      p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      p.put(ConsumerConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
      p.put(ConsumerConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "30000");
      p.put(ConsumerConfig.CLIENT_ID_CONFIG, "compat-" + FAMILY + "-" + scenario + "-" + suffix);
      putPairs(p, extra);
      return new KafkaConsumer<>(p, new ByteArrayDeserializer(), new ByteArrayDeserializer());
    }

    /** Creates a topic with the admin API and waits until every partition has a leader. */
    String topic(int partitions, Map<String, String> configs) throws Exception {
      String name = name();
      try (Admin admin = admin()) {
        NewTopic topic = new NewTopic(name, partitions, (short) 1).configs(configs);
        try {
          admin.createTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
        } catch (ExecutionException e) {
          throw new Failure("creating topic " + name + " failed: " + describe(e));
        }
        awaitLeaders(admin, name, partitions);
      }
      return name;
    }

    String topic(int partitions) throws Exception {
      return topic(partitions, Map.of());
    }
  }

  static void putPairs(Properties p, String... pairs) {
    for (int i = 0; i + 1 < pairs.length; i += 2) p.put(pairs[i], pairs[i + 1]);
  }

  /** Waits (10 s at most) until the admin describe shows `partitions` partitions with leaders. */
  static TopicDescription awaitLeaders(Admin admin, String topic, int partitions) throws Exception {
    long deadline = System.currentTimeMillis() + 10_000;
    String last = "nothing";
    while (true) {
      try {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(15, TimeUnit.SECONDS).get(topic);
        long led = d.partitions().stream().filter(p -> p.leader() != null && !p.leader().isEmpty()).count();
        if (d.partitions().size() == partitions && led == partitions) return d;
        last = d.partitions().size() + " partitions, " + led + " with a leader";
      } catch (ExecutionException e) {
        last = describe(e);
      }
      if (System.currentTimeMillis() > deadline) {
        throw new Failure("topic " + topic + " not ready after 10 s (expected " + partitions + " partitions with leaders): " + last);
      }
      Thread.sleep(200);
    }
  }

  // ---------------------------------------------------------------------------------------
  // Records: what was sent, and reading it back

  /** A record as sent (and, once acknowledged, where it landed). */
  static final class Rec {
    final byte[] key;
    final byte[] value;
    final Header[] headers;
    final Integer partition; // the partition asked for, or null to let the partitioner choose
    final Long timestamp;
    RecordMetadata meta;

    Rec(byte[] key, byte[] value, Header[] headers, Integer partition, Long timestamp) {
      this.key = key;
      this.value = value;
      this.headers = headers;
      this.partition = partition;
      this.timestamp = timestamp;
    }

    static Rec of(String key, String value) {
      return new Rec(utf8(key), utf8(value), new Header[0], null, null);
    }

    static Rec at(int partition, String key, String value) {
      return new Rec(utf8(key), utf8(value), new Header[0], partition, null);
    }
  }

  static byte[] utf8(String s) {
    return s == null ? null : s.getBytes(StandardCharsets.UTF_8);
  }

  static String show(byte[] b) {
    if (b == null) return "null";
    String s = new String(b, StandardCharsets.UTF_8);
    return b.length <= 40 && s.chars().allMatch(c -> c >= 32 && c < 127) ? "'" + s + "'" : b.length + " bytes";
  }

  /** Sends every record (in order), flushes and waits for every acknowledgement. */
  static void send(KafkaProducer<byte[], byte[]> producer, String topic, List<Rec> records) throws Exception {
    List<Future<RecordMetadata>> futures = new ArrayList<>();
    for (Rec r : records) {
      futures.add(producer.send(new ProducerRecord<>(topic, r.partition, r.timestamp, r.key, r.value, Arrays.asList(r.headers))));
    }
    producer.flush();
    for (int i = 0; i < records.size(); i++) {
      try {
        records.get(i).meta = futures.get(i).get(60, TimeUnit.SECONDS);
      } catch (ExecutionException e) {
        throw new Failure("record " + i + " of " + records.size() + " was not acknowledged: " + describe(e));
      }
    }
  }

  /** Reads every partition of `topic` from its beginning until it holds `expected` records. */
  static List<ConsumerRecord<byte[], byte[]>> readAll(Ctx ctx, String topic, int expected) throws Exception {
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      List<TopicPartition> tps = new ArrayList<>();
      for (PartitionInfo p : consumer.partitionsFor(topic, Duration.ofSeconds(15))) tps.add(new TopicPartition(topic, p.partition()));
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
      List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
      long deadline = System.currentTimeMillis() + READ_DEADLINE.toMillis();
      while (got.size() < expected && System.currentTimeMillis() < deadline) {
        consumer.poll(Duration.ofMillis(200)).forEach(got::add);
      }
      // Nothing beyond what was expected: the positions must be the log end offsets.
      Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(15));
      for (TopicPartition tp : tps) {
        long position = consumer.position(tp, Duration.ofSeconds(15));
        if (position < ends.get(tp)) consumer.poll(Duration.ofMillis(500)).forEach(got::add);
      }
      return got;
    }
  }

  /**
   * The round trip: `got` holds exactly the sent records, per partition in send order, each at
   * the partition (and, with `offsets`, the offset) its acknowledgement gave, with the same key,
   * value and headers (nulls as nulls). Without `offsets` (acks=0) only values are compared.
   */
  static void verify(List<Rec> sent, List<ConsumerRecord<byte[], byte[]>> got, boolean offsets) throws Failure {
    Map<Integer, List<Rec>> want = new TreeMap<>();
    for (Rec r : sent) want.computeIfAbsent(r.meta.partition(), k -> new ArrayList<>()).add(r);
    Map<Integer, List<ConsumerRecord<byte[], byte[]>>> have = new TreeMap<>();
    for (ConsumerRecord<byte[], byte[]> r : got) have.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r);
    check(got.size() == sent.size(), () -> "read " + got.size() + " records, sent " + sent.size() + " (per partition read " + counts(have) + ", sent " + counts(want) + ")");
    for (Map.Entry<Integer, List<Rec>> e : want.entrySet()) {
      int partition = e.getKey();
      List<Rec> w = e.getValue();
      List<ConsumerRecord<byte[], byte[]>> h = have.getOrDefault(partition, List.of());
      check(h.size() == w.size(), () -> "partition " + partition + ": read " + h.size() + " records, sent " + w.size());
      for (int i = 0; i < w.size(); i++) {
        Rec s = w.get(i);
        ConsumerRecord<byte[], byte[]> r = h.get(i);
        String at = "partition " + partition + " record " + i + " (offset " + r.offset() + ")";
        if (offsets) check(r.offset() == s.meta.offset(), () -> at + ": acknowledged at offset " + s.meta.offset());
        check(Arrays.equals(r.value(), s.value), () -> at + ": value " + show(r.value()) + ", sent " + show(s.value));
        if (!offsets) continue;
        check(Arrays.equals(r.key(), s.key), () -> at + ": key " + show(r.key()) + ", sent " + show(s.key));
        Header[] rh = r.headers().toArray();
        check(rh.length == s.headers.length, () -> at + ": " + rh.length + " headers, sent " + s.headers.length);
        for (int j = 0; j < rh.length; j++) {
          Header a = rh[j], b = s.headers[j];
          int n = j;
          check(a.key().equals(b.key()) && Arrays.equals(a.value(), b.value()),
              () -> at + ": header " + n + " " + a.key() + "=" + show(a.value()) + ", sent " + b.key() + "=" + show(b.value()));
        }
      }
    }
  }

  static String counts(Map<Integer, ? extends List<?>> byPartition) {
    Map<Integer, Integer> n = new TreeMap<>();
    byPartition.forEach((p, l) -> n.put(p, l.size()));
    return n.toString();
  }

  static List<Rec> numbered(int count, String prefix) {
    List<Rec> records = new ArrayList<>();
    for (int i = 0; i < count; i++) records.add(Rec.of("k-" + prefix + i, "v-" + prefix + i));
    return records;
  }

  /** Polls (an assigned and positioned, or subscribed, consumer) until `count` records came. */
  static List<ConsumerRecord<byte[], byte[]>> poll(KafkaConsumer<byte[], byte[]> consumer, int count) {
    List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
    long deadline = System.currentTimeMillis() + READ_DEADLINE.toMillis();
    while (got.size() < count && System.currentTimeMillis() < deadline) {
      consumer.poll(Duration.ofMillis(200)).forEach(got::add);
    }
    return got;
  }

  /** `got` is exactly offsets first.. of partition 0 with the values of `sent` from index first. */
  static void verifyRange(List<ConsumerRecord<byte[], byte[]>> got, List<Rec> sent, int first) throws Failure {
    int count = sent.size() - first;
    check(got.size() == count, () -> "read " + got.size() + " records, expected " + count + " (offsets " + first + ".." + (sent.size() - 1) + ")"
        + (got.isEmpty() ? "" : "; first offset read " + got.get(0).offset()));
    for (int i = 0; i < count; i++) {
      ConsumerRecord<byte[], byte[]> r = got.get(i);
      Rec s = sent.get(first + i);
      long want = first + i;
      check(r.offset() == want && r.partition() == 0, () -> "read partition " + r.partition() + " offset " + r.offset() + ", expected partition 0 offset " + want);
      check(Arrays.equals(r.value(), s.value), () -> "offset " + want + ": value " + show(r.value()) + ", sent " + show(s.value));
    }
  }

  // ---------------------------------------------------------------------------------------
  // The scenarios

  static void metadata(Ctx ctx) throws Exception {
    try (Admin admin = ctx.admin()) {
      Collection<Node> nodes = admin.describeCluster().nodes().get(30, TimeUnit.SECONDS);
      check(!nodes.isEmpty(), () -> "describeCluster listed no broker");
      for (Node n : nodes) check(n.host() != null && !n.host().isEmpty() && n.port() > 0, () -> "broker without host/port: " + n);
    }
    String topic = ctx.topic(3); // waits until the admin describe shows 3 partitions with leaders
    // The same through a plain Metadata request (the consumer's partitionsFor).
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      List<PartitionInfo> parts = consumer.partitionsFor(topic, Duration.ofSeconds(15));
      check(parts != null && parts.size() == 3, () -> "Metadata shows " + (parts == null ? "no" : parts.size()) + " partitions of " + topic + ", expected 3");
      for (PartitionInfo p : parts) check(p.leader() != null && !p.leader().isEmpty(), () -> "partition " + p.partition() + " has no leader in Metadata");
    }
  }

  static void produceAcks(Ctx ctx, String acks) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = numbered(200, "");
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer(ProducerConfig.ACKS_CONFIG, acks)) {
      send(producer, topic, sent);
    }
    verify(sent, readAll(ctx, topic, sent.size()), !acks.equals("0"));
  }

  static void compression(Ctx ctx, String codec) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = numbered(200, "");
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec)) {
      send(producer, topic, sent);
    }
    verify(sent, readAll(ctx, topic, sent.size()), true);
  }

  static void keysHeadersNulls(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = new ArrayList<>();
    int keyed = 0;
    for (int i = 0; i < 60; i++) {
      byte[] key = null;
      if (i % 10 != 3) { // every tenth key null; the others 5 bytes each, all 256 values across them
        key = new byte[5];
        for (int b = 0; b < 5; b++) key[b] = (byte) ((keyed * 5 + b) % 256);
        keyed++;
      }
      byte[] value = i % 7 == 5 ? null : new byte[] {(byte) i, 0, (byte) 0xff, (byte) (255 - i)};
      Header[] headers = {new RecordHeader("h", new byte[] {(byte) i, 0, (byte) 0x80}), new RecordHeader("h", new byte[0])};
      sent.add(new Rec(key, value, headers, null, null));
    }
    Set<Integer> bytes = new HashSet<>();
    for (Rec r : sent) if (r.key != null) for (byte b : r.key) bytes.add(b & 0xff);
    check(bytes.size() == 256, () -> "test bug: keys cover " + bytes.size() + " byte values");
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
      send(producer, topic, sent);
    }
    verify(sent, readAll(ctx, topic, sent.size()), true);
  }

  static void largeMessage(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    byte[] value = new byte[900_000];
    new Random().nextBytes(value);
    List<Rec> sent = List.of(new Rec(utf8("large"), value, new Header[0], null, null));
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "2000000")) {
      send(producer, topic, sent);
    }
    verify(sent, readAll(ctx, topic, 1), true);
  }

  /** Sends `count` records v-0.. to partition 0 of a new 3-partition topic. */
  static List<Rec> toPartition0(Ctx ctx, String topic, int count) throws Exception {
    List<Rec> sent = new ArrayList<>();
    for (int i = 0; i < count; i++) sent.add(Rec.at(0, "k-" + i, "v-" + i));
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
      send(producer, topic, sent);
    }
    for (int i = 0; i < count; i++) {
      long offset = sent.get(i).meta.offset();
      int n = i;
      check(offset == i, () -> "record " + n + " acknowledged at offset " + offset + " of partition 0, expected " + n);
    }
    return sent;
  }

  static void consumeBeginning(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = toPartition0(ctx, topic, 50);
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      TopicPartition tp = new TopicPartition(topic, 0);
      consumer.assign(List.of(tp));
      consumer.seekToBeginning(List.of(tp));
      verifyRange(poll(consumer, 50), sent, 0);
    }
  }

  static void consumeOffset(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = toPartition0(ctx, topic, 100);
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      TopicPartition tp = new TopicPartition(topic, 0);
      consumer.assign(List.of(tp));
      consumer.seek(tp, 40);
      List<ConsumerRecord<byte[], byte[]>> got = poll(consumer, 60);
      consumer.poll(Duration.ofMillis(300)).forEach(got::add); // nothing more may come
      verifyRange(got, sent, 40);
    }
  }

  static void consumeTimestamp(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    // Both batches in the past, so no broker bound on future timestamps can reject them.
    long t0 = System.currentTimeMillis() - 2 * 3600_000L;
    long t1 = t0 + 3600_000L;
    List<Rec> sent = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      long ts = i < 50 ? t0 + i : t1 + (i - 50);
      sent.add(new Rec(utf8("k-" + i), utf8("v-" + i), new Header[0], 0, ts));
    }
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
      send(producer, topic, sent);
    }
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      TopicPartition tp = new TopicPartition(topic, 0);
      Map<TopicPartition, OffsetAndTimestamp> found = consumer.offsetsForTimes(Map.of(tp, t1), Duration.ofSeconds(15));
      OffsetAndTimestamp at = found.get(tp);
      check(at != null, () -> "offsetsForTimes(" + t1 + ") found no offset, expected 50");
      check(at.offset() == 50, () -> "offsetsForTimes(T1) returned offset " + at.offset() + ", expected 50");
      check(at.timestamp() == t1, () -> "offsetsForTimes(T1) returned timestamp " + at.timestamp() + ", expected " + t1);
      consumer.assign(List.of(tp));
      consumer.seek(tp, at.offset());
      List<ConsumerRecord<byte[], byte[]>> got = poll(consumer, 50);
      verifyRange(got, sent, 50);
      for (ConsumerRecord<byte[], byte[]> r : got) {
        long want = t1 + (r.offset() - 50);
        check(r.timestamp() == want, () -> "offset " + r.offset() + ": timestamp " + r.timestamp() + ", sent " + want);
      }
    }
  }

  static void consumeEnd(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> all = new ArrayList<>(toPartition0(ctx, topic, 20));
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      TopicPartition tp = new TopicPartition(topic, 0);
      consumer.assign(List.of(tp));
      consumer.seekToEnd(List.of(tp));
      long position = consumer.position(tp, Duration.ofSeconds(15));
      check(position == 20, () -> "position at the end is " + position + ", expected 20");
      List<Rec> later = new ArrayList<>();
      for (int i = 0; i < 10; i++) later.add(Rec.at(0, "k-later-" + i, "v-later-" + i));
      try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
        send(producer, topic, later);
      }
      List<ConsumerRecord<byte[], byte[]>> got = poll(consumer, 10);
      consumer.poll(Duration.ofMillis(300)).forEach(got::add);
      all.addAll(later);
      verifyRange(got, all, 20);
    }
  }

  static void idempotent(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    List<Rec> sent = numbered(300, "");
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true", ProducerConfig.ACKS_CONFIG, "all")) {
      send(producer, topic, sent);
    }
    List<ConsumerRecord<byte[], byte[]>> got = readAll(ctx, topic, sent.size());
    Set<String> values = new HashSet<>();
    for (ConsumerRecord<byte[], byte[]> r : got) {
      check(values.add(new String(r.value(), StandardCharsets.UTF_8)), () -> "duplicate " + show(r.value()) + " at partition " + r.partition() + " offset " + r.offset());
    }
    verify(sent, got, true);
  }

  /** Polls both consumers in turn until `done` holds (or the deadline passes). */
  static void pollBoth(List<KafkaConsumer<byte[], byte[]>> consumers, Map<KafkaConsumer<byte[], byte[]>, List<ConsumerRecord<byte[], byte[]>>> got,
      Supplier<Boolean> done, long millis, Map<KafkaConsumer<byte[], byte[]>, Set<TopicPartition>> ownerAtPoll) throws Failure {
    long deadline = System.currentTimeMillis() + millis;
    while (!done.get() && System.currentTimeMillis() < deadline) {
      for (KafkaConsumer<byte[], byte[]> c : consumers) {
        for (ConsumerRecord<byte[], byte[]> r : c.poll(Duration.ofMillis(100))) {
          TopicPartition tp = new TopicPartition(r.topic(), r.partition());
          if (ownerAtPoll != null) {
            Set<TopicPartition> owned = c.assignment();
            check(owned.contains(tp), () -> "a consumer got a record of " + tp + " it does not own (it owns " + owned + ")");
          }
          got.computeIfAbsent(c, k -> new ArrayList<>()).add(r);
        }
      }
    }
  }

  static void groupRebalance(Ctx ctx) throws Exception {
    String topic = ctx.topic(4);
    String group = ctx.name();
    String[] groupProps = {ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500", ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000"};
    KafkaConsumer<byte[], byte[]> a = ctx.consumer(groupProps);
    KafkaConsumer<byte[], byte[]> b = ctx.consumer(groupProps);
    boolean aClosed = false;
    try {
      a.subscribe(List.of(topic));
      b.subscribe(List.of(topic));
      List<KafkaConsumer<byte[], byte[]>> both = List.of(a, b);
      Map<KafkaConsumer<byte[], byte[]>, List<ConsumerRecord<byte[], byte[]>>> got = new HashMap<>();
      // Both members hold partitions, disjoint, all 4 covered.
      Supplier<Boolean> shared = () -> {
        Set<TopicPartition> sa = a.assignment(), sb = b.assignment();
        Set<TopicPartition> all = new HashSet<>(sa);
        all.addAll(sb);
        return !sa.isEmpty() && !sb.isEmpty() && all.size() == 4 && sa.size() + sb.size() == 4;
      };
      pollBoth(both, got, shared, 45_000, null);
      check(shared.get(), () -> "after 45 s the members hold " + a.assignment() + " and " + b.assignment() + "; expected both non-empty, disjoint, all 4 partitions");
      check(got.isEmpty(), () -> "records came before any was produced");
      Map<KafkaConsumer<byte[], byte[]>, Set<TopicPartition>> owners = Map.of(a, a.assignment(), b, b.assignment());

      List<Rec> first = numbered(200, "a");
      try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
        send(producer, topic, first);
      }
      Supplier<Integer> total = () -> got.values().stream().mapToInt(List::size).sum();
      pollBoth(both, got, () -> total.get() >= 200, 30_000, owners);
      pollBoth(both, got, () -> false, 300, owners); // nothing more may come
      check(a.assignment().equals(owners.get(a)) && b.assignment().equals(owners.get(b)), () -> "the assignment changed while consuming");
      checkOnce(first, got.values(), "first 200");
      a.commitSync(Duration.ofSeconds(15));
      b.commitSync(Duration.ofSeconds(15));

      // One member leaves: the other takes all 4 and reads the next 100 (and nothing again).
      a.close(CloseOptions.timeout(Duration.ofSeconds(15)));
      aClosed = true;
      got.clear();
      pollBoth(List.of(b), got, () -> b.assignment().size() == 4, 30_000, null);
      check(b.assignment().size() == 4, () -> "30 s after the other member left, the remaining one holds " + b.assignment() + ", expected all 4");
      List<Rec> second = numbered(100, "b");
      try (KafkaProducer<byte[], byte[]> producer = ctx.producer()) {
        send(producer, topic, second);
      }
      pollBoth(List.of(b), got, () -> total.get() >= 100, 30_000, null);
      pollBoth(List.of(b), got, () -> false, 300, null);
      checkOnce(second, got.values(), "next 100");
    } finally {
      if (!aClosed) a.close(CloseOptions.timeout(Duration.ofSeconds(5)));
      b.close(CloseOptions.timeout(Duration.ofSeconds(5)));
    }
  }

  /** The consumed records hold every sent value exactly once, and nothing else. */
  static void checkOnce(List<Rec> sent, Collection<List<ConsumerRecord<byte[], byte[]>>> got, String what) throws Failure {
    Map<String, Integer> seen = new HashMap<>();
    int n = 0;
    for (List<ConsumerRecord<byte[], byte[]>> l : got) {
      for (ConsumerRecord<byte[], byte[]> r : l) {
        seen.merge(new String(r.value(), StandardCharsets.UTF_8), 1, Integer::sum);
        n++;
      }
    }
    int count = n;
    Set<String> want = new HashSet<>();
    for (Rec r : sent) want.add(new String(r.value, StandardCharsets.UTF_8));
    Optional<String> twice = seen.entrySet().stream().filter(e -> e.getValue() > 1).map(Map.Entry::getKey).findFirst();
    check(twice.isEmpty(), () -> what + ": " + twice.get() + " consumed " + seen.get(twice.get()) + " times");
    check(seen.keySet().equals(want), () -> what + ": consumed " + count + " records, " + seen.keySet().stream().filter(want::contains).count() + " of the " + want.size() + " produced"
        + seen.keySet().stream().filter(v -> !want.contains(v)).findFirst().map(v -> ", and unexpected " + v).orElse(""));
  }

  static void commitResume(Ctx ctx) throws Exception {
    String topic = ctx.topic(1);
    String group = ctx.name();
    TopicPartition tp = new TopicPartition(topic, 0);
    List<Rec> sent = toPartition0(ctx, topic, 150);
    try (KafkaConsumer<byte[], byte[]> first = ctx.consumer(ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100")) {
      first.subscribe(List.of(topic));
      List<ConsumerRecord<byte[], byte[]>> got = poll(first, 100);
      check(got.size() >= 100, () -> "the first member read " + got.size() + " records in 30 s, expected at least 100");
      verifyRange(got.subList(0, 100), sent.subList(0, 100), 0);
      first.commitSync(Map.of(tp, new OffsetAndMetadata(100)), Duration.ofSeconds(15));
    }
    try (KafkaConsumer<byte[], byte[]> second = ctx.consumer(ConsumerConfig.GROUP_ID_CONFIG, group)) {
      OffsetAndMetadata committed = second.committed(Set.of(tp), Duration.ofSeconds(15)).get(tp);
      check(committed != null && committed.offset() == 100, () -> "the group's committed offset is " + (committed == null ? "none" : committed.offset()) + ", expected 100");
      second.subscribe(List.of(topic));
      List<ConsumerRecord<byte[], byte[]>> got = poll(second, 50);
      second.poll(Duration.ofMillis(300)).forEach(got::add);
      verifyRange(got, sent, 100);
    }
  }

  static void adminTopics(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    try (Admin admin = ctx.admin()) {
      check(admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic), () -> "listTopics does not list the new topic " + topic);
      admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(30, TimeUnit.SECONDS);
      TopicDescription d = awaitLeaders(admin, topic, 5);
      check(d.partitions().size() == 5, () -> "describe shows " + d.partitions().size() + " partitions after growing to 5");
      admin.deleteTopics(List.of(topic)).all().get(30, TimeUnit.SECONDS);
      long deadline = System.currentTimeMillis() + 10_000;
      while (admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic)) {
        check(System.currentTimeMillis() < deadline, () -> "the deleted topic is still listed after 10 s");
        Thread.sleep(200);
      }
    }
  }

  static String describeRetention(Admin admin, ConfigResource resource) throws Exception {
    Config config = admin.describeConfigs(List.of(resource)).all().get(30, TimeUnit.SECONDS).get(resource);
    ConfigEntry entry = config.get("retention.ms");
    return entry == null ? null : entry.value();
  }

  static void adminConfigs(Ctx ctx) throws Exception {
    String topic = ctx.topic(3, Map.of("retention.ms", "3600000"));
    ConfigResource resource = new ConfigResource(ConfigResource.Type.TOPIC, topic);
    try (Admin admin = ctx.admin()) {
      String before = describeRetention(admin, resource);
      check("3600000".equals(before), () -> "describeConfigs shows retention.ms=" + before + ", created with 3600000");
      AlterConfigOp set = new AlterConfigOp(new ConfigEntry("retention.ms", "7200000"), AlterConfigOp.OpType.SET);
      admin.incrementalAlterConfigs(Map.of(resource, List.of(set))).all().get(30, TimeUnit.SECONDS);
      long deadline = System.currentTimeMillis() + 10_000;
      String after;
      while (!"7200000".equals(after = describeRetention(admin, resource)) && System.currentTimeMillis() < deadline) Thread.sleep(200);
      String last = after;
      check("7200000".equals(last), () -> "after incrementalAlterConfigs retention.ms=7200000, describeConfigs shows " + last);
    }
  }

  static void deleteRecords(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    toPartition0(ctx, topic, 100);
    TopicPartition tp = new TopicPartition(topic, 0);
    try (Admin admin = ctx.admin()) {
      DeletedRecords deleted = admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(30))).lowWatermarks().get(tp).get(30, TimeUnit.SECONDS);
      check(deleted.lowWatermark() == 30, () -> "deleteRecords returned low watermark " + deleted.lowWatermark() + ", expected 30");
      long earliest = admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
      check(earliest == 30, () -> "listOffsets(earliest) is " + earliest + " after deleting before 30");
    }
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      long start = consumer.beginningOffsets(List.of(tp), Duration.ofSeconds(15)).get(tp);
      check(start == 30, () -> "the consumer's beginningOffsets is " + start + ", expected 30");
      consumer.assign(List.of(tp));
      consumer.seekToBeginning(List.of(tp));
      List<ConsumerRecord<byte[], byte[]>> got = poll(consumer, 70);
      check(!got.isEmpty() && got.get(0).offset() == 30, () -> "a consumer from the earliest offset starts at " + (got.isEmpty() ? "nothing" : "offset " + got.get(0).offset()) + ", expected 30");
      check(got.size() == 70, () -> "read " + got.size() + " records from offset 30, expected 70");
    }
  }

  static void errorUnknownTopic(Ctx ctx) throws Exception {
    String topic = ctx.name();
    try (Admin admin = ctx.admin()) {
      try {
        Map<String, TopicDescription> d = admin.describeTopics(List.of(topic)).allTopicNames().get(30, TimeUnit.SECONDS);
        throw new Failure("describing the missing topic " + topic + " succeeded: " + d.get(topic));
      } catch (ExecutionException e) {
        check(e.getCause() instanceof UnknownTopicOrPartitionException, () -> "expected UnknownTopicOrPartitionException, got " + describe(e));
      }
    }
  }

  static void errorInvalidTopic(Ctx ctx) throws Exception {
    try (Admin admin = ctx.admin()) {
      try {
        admin.createTopics(List.of(new NewTopic("bad/name", 3, (short) 1))).all().get(30, TimeUnit.SECONDS);
        throw new Failure("creating topic 'bad/name' succeeded");
      } catch (ExecutionException e) {
        check(e.getCause() instanceof InvalidTopicException, () -> "expected InvalidTopicException, got " + describe(e));
      }
    }
  }

  static void errorTooLarge(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    byte[] value = new byte[2_000_000];
    new Random().nextBytes(value);
    try (KafkaProducer<byte[], byte[]> producer = ctx.producer(ProducerConfig.MAX_REQUEST_SIZE_CONFIG, "4194304")) {
      try {
        RecordMetadata meta = producer.send(new ProducerRecord<>(topic, 0, null, value)).get(60, TimeUnit.SECONDS);
        throw new Failure("the 2,000,000-byte record was accepted at offset " + meta.offset() + " of partition " + meta.partition());
      } catch (ExecutionException e) {
        check(e.getCause() instanceof RecordTooLargeException, () -> "expected RecordTooLargeException (MESSAGE_TOO_LARGE), got " + describe(e));
      }
    }
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer()) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < 3; p++) tps.add(new TopicPartition(topic, p));
      Map<TopicPartition, Long> ends = consumer.endOffsets(tps, Duration.ofSeconds(15));
      check(ends.values().stream().allMatch(o -> o == 0), () -> "the topic is not empty: end offsets " + ends);
    }
  }

  static void errorOutOfRange(Ctx ctx) throws Exception {
    String topic = ctx.topic(3);
    toPartition0(ctx, topic, 10);
    TopicPartition tp = new TopicPartition(topic, 0);
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "none")) {
      consumer.assign(List.of(tp));
      consumer.seek(tp, 1000);
      long deadline = System.currentTimeMillis() + 20_000;
      List<ConsumerRecord<byte[], byte[]>> got = new ArrayList<>();
      while (System.currentTimeMillis() < deadline) {
        try {
          consumer.poll(Duration.ofMillis(200)).forEach(got::add);
        } catch (OffsetOutOfRangeException e) {
          check(e.offsetOutOfRangePartitions().containsKey(tp), () -> "OffsetOutOfRangeException for " + e.offsetOutOfRangePartitions() + ", expected " + tp);
          return;
        }
      }
      throw new Failure("no OffsetOutOfRangeException within 20 s of polling at offset 1000 (read " + got.size() + " records, position " + consumer.position(tp) + ")");
    }
  }
  /** Sends values (key = value) to partition 0 inside the open transaction and waits for the acknowledgements. */
  static void sendValues(KafkaProducer<byte[], byte[]> producer, String topic, List<String> values) throws Exception {
    List<Rec> records = new ArrayList<>();
    for (String v : values) records.add(Rec.at(0, v, v));
    send(producer, topic, records);
  }

  static List<String> values(String prefix, int count) {
    List<String> values = new ArrayList<>();
    for (int i = 0; i < count; i++) values.add(prefix + "-" + i);
    return values;
  }

  /** Reads partition 0 of `topic` from the beginning with the given isolation level: the values, in order. */
  static List<String> readValues(Ctx ctx, String topic, String isolation, int expected) {
    try (KafkaConsumer<byte[], byte[]> consumer = ctx.consumer(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation)) {
      TopicPartition tp = new TopicPartition(topic, 0);
      consumer.assign(List.of(tp));
      consumer.seekToBeginning(List.of(tp));
      List<String> got = new ArrayList<>();
      long deadline = System.currentTimeMillis() + READ_DEADLINE.toMillis();
      while (got.size() < expected && System.currentTimeMillis() < deadline) {
        consumer.poll(Duration.ofMillis(200)).forEach(r -> got.add(new String(r.value(), StandardCharsets.UTF_8)));
      }
      // Anything beyond what was expected (aborted or fenced records) shows up in this last poll.
      consumer.poll(Duration.ofMillis(1000)).forEach(r -> got.add(new String(r.value(), StandardCharsets.UTF_8)));
      return got;
    }
  }

  static boolean fenced(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof ProducerFencedException || t instanceof InvalidProducerEpochException) return true;
    }
    return false;
  }

  static void transactions(Ctx ctx) throws Exception {
    String output = ctx.topic(1);
    String input = ctx.topic(1);
    String group = ctx.name();
    String transactionalId = ctx.name();
    TopicPartition inputTp = new TopicPartition(input, 0);
    List<String> inputs = values("in", 3);
    List<String> t1 = values("t1", 10);
    List<String> t2 = values("t2", 5);
    List<String> t3 = values("t3", 3);
    try (KafkaProducer<byte[], byte[]> plain = ctx.producer()) {
      sendValues(plain, input, inputs);
    }
    String[] txnConfig = {ProducerConfig.TRANSACTIONAL_ID_CONFIG, transactionalId, ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true",
        ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, "30000"};
    KafkaProducer<byte[], byte[]> first = ctx.producer(txnConfig);
    try {
      first.initTransactions();
      first.beginTransaction();
      sendValues(first, output, t1);
      first.commitTransaction();
      first.beginTransaction();
      sendValues(first, output, t2);
      first.abortTransaction();

      // Transaction 3: a group member reads the input; its offsets are committed with the output.
      try (KafkaConsumer<byte[], byte[]> member = ctx.consumer(ConsumerConfig.GROUP_ID_CONFIG, group, ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed")) {
        member.subscribe(List.of(input));
        List<ConsumerRecord<byte[], byte[]>> got = poll(member, inputs.size());
        List<String> read = new ArrayList<>();
        got.forEach(r -> read.add(new String(r.value(), StandardCharsets.UTF_8)));
        check(read.equals(inputs), () -> "the group member read " + read + " from the input topic, expected " + inputs);
        first.beginTransaction();
        sendValues(first, output, t3);
        first.sendOffsetsToTransaction(Map.of(inputTp, new OffsetAndMetadata(inputs.size())), member.groupMetadata());
        first.commitTransaction();
        OffsetAndMetadata committed = member.committed(Set.of(inputTp), Duration.ofSeconds(15)).get(inputTp);
        check(committed != null && committed.offset() == inputs.size(),
            () -> "group " + group + " committed offset of the input is " + (committed == null ? "none" : committed.offset()) + ", expected 3");
      }

      // A second producer with the same transactional.id fences the first.
      try (KafkaProducer<byte[], byte[]> second = ctx.producer(txnConfig)) {
        second.initTransactions();
      }
      Exception error = null;
      try {
        first.beginTransaction();
        first.send(new ProducerRecord<>(output, 0, utf8("fenced"), utf8("fenced"))).get(30, TimeUnit.SECONDS);
        first.commitTransaction();
      } catch (Exception e) {
        error = e;
      }
      Exception fencedError = error;
      check(fencedError != null, () -> "the fenced producer committed a transaction after a second producer with its transactional.id initialised");
      check(fenced(fencedError), () -> "the fenced producer failed with " + describe(fencedError) + ", expected ProducerFencedException");
      System.err.println("[java] transactions: first producer fenced: " + describe(fencedError));
    } finally {
      first.close(Duration.ofSeconds(5));
    }

    List<String> committedView = readValues(ctx, output, "read_committed", t1.size() + t3.size());
    List<String> wantCommitted = new ArrayList<>(t1);
    wantCommitted.addAll(t3);
    check(committedView.equals(wantCommitted), () -> "read_committed read " + committedView + ", expected " + wantCommitted);
    List<String> everything = readValues(ctx, output, "read_uncommitted", t1.size() + t2.size() + t3.size());
    List<String> wantAll = new ArrayList<>(t1);
    wantAll.addAll(t2);
    wantAll.addAll(t3);
    check(everything.equals(wantAll), () -> "read_uncommitted read " + everything + ", expected " + wantAll);
  }
}
