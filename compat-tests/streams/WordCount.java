import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;

/**
 * Kafka Streams word count, at-least-once: the input topic's lines are split into words,
 * re-keyed by word (groupBy: a repartition topic) and counted (count: a state store whose
 * changelog topic Streams creates with cleanup.policy=compact), every count update goes to
 * the output topic. The driver produces TEXT, starts the app, reads the output from the
 * beginning until the latest count of every word equals EXPECTED (counted by the calling
 * script, not by Streams), checks the internal topics Streams made, and closes the app. Then
 * it produces MORE_TEXT and starts the app again on an empty state directory: the counts
 * must be restored from the changelog and reach EXPECTED_IN_THE_END (TEXT and MORE_TEXT).
 *
 * <p>usage: WordCount BOOTSTRAP APP_ID TEXT EXPECTED MORE_TEXT EXPECTED_IN_THE_END STATE_DIR
 * TIMEOUT_SECONDS — prints 'PASS streams-...' or 'FAIL streams-...: why' lines. The EXPECTED
 * files have one 'word count' line per word. Topics: APP_ID-input, APP_ID-output, and Streams'
 * own APP_ID-words-repartition and APP_ID-word-counts-changelog.
 */
public final class WordCount {
  static int failures = 0;

  /** `exactly_once_v2` (the env STREAMS_GUARANTEE) or Kafka's default at-least-once. */
  static final boolean EXACTLY_ONCE =
      "exactly_once_v2".equals(System.getenv("STREAMS_GUARANTEE"));

  static void result(String name, String failure) {
    // The exactly-once run's checks are told apart from the at-least-once run's.
    if (EXACTLY_ONCE) name = name.replaceFirst("^streams-", "streams-eos-");
    if (failure == null) {
      System.out.println("PASS " + name);
    } else {
      failures++;
      System.out.println("FAIL " + name + ": " + failure.replace('\n', ' '));
    }
    System.out.flush();
  }

  static String describe(Throwable e) {
    Throwable root = e;
    while (root.getCause() != null) root = root.getCause();
    return e + (root != e ? " (cause: " + root + ")" : "");
  }

  public static void main(String[] args) {
    try {
      run(args[0], args[1], Path.of(args[2]), Path.of(args[3]), Path.of(args[4]), Path.of(args[5]),
          args[6], Integer.parseInt(args[7]));
    } catch (Exception e) {
      result("streams-wordcount", describe(e));
    }
    System.exit(failures == 0 ? 0 : 1);
  }

  static Map<String, Long> readExpected(Path file) throws Exception {
    Map<String, Long> expected = new TreeMap<>();
    for (String line : Files.readAllLines(file, StandardCharsets.UTF_8)) {
      String[] fields = line.trim().split(" ");
      if (fields.length == 2) expected.put(fields[0], Long.parseLong(fields[1]));
    }
    if (expected.isEmpty()) throw new IllegalArgumentException("no expected counts in " + file);
    return expected;
  }

  static void produce(Properties common, String topic, Path text, String keyPrefix) throws Exception {
    List<String> lines = Files.readAllLines(text, StandardCharsets.UTF_8);
    Properties producerProps = new Properties();
    producerProps.putAll(common);
    producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(producerProps, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < lines.size(); i++) {
        producer.send(new ProducerRecord<>(topic, keyPrefix + i, lines.get(i)));
      }
      producer.flush();
    }
  }

  static void run(String bootstrap, String appId, Path text, Path expectedFile, Path moreText,
      Path expectedAfterMore, String stateDir, int timeoutSeconds) throws Exception {
    String input = appId + "-input";
    String output = appId + "-output";
    Map<String, Long> expected = readExpected(expectedFile);
    Map<String, Long> expectedInTheEnd = readExpected(expectedAfterMore);

    Properties common = new Properties();
    common.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    try (Admin admin = Admin.create(common)) {
      // The broker's default replication factor, as Streams asks for its own topics.
      admin.createTopics(List.of(
          new NewTopic(input, Optional.of(3), Optional.empty()),
          new NewTopic(output, Optional.of(3), Optional.empty()))).all().get();
    }
    produce(common, input, text, "line-");
    result("streams-input-produced", null);

    long deadline = System.nanoTime() + Duration.ofSeconds(timeoutSeconds).toNanos();
    App first = new App(common, appId, stateDir + "/first");
    try {
      String counted = readCounts(bootstrap, output, expected, first, deadline);
      result("streams-wordcount-exact", counted);
      if (counted != null) return;
      checkInternalTopics(common, appId);
      checkPurged(common, appId, deadline);
    } finally {
      first.close("streams-close");
    }

    // The same application again with no local state: it restores its counts from the
    // changelog topic, then counts the new lines on top of them.
    produce(common, input, moreText, "more-line-");
    App second = new App(common, appId, stateDir + "/second");
    try {
      String counted = readCounts(bootstrap, output, expectedInTheEnd, second, deadline);
      long restored = second.restored.get();
      result("streams-restored-from-changelog",
          restored > 0 ? null : "no record restored from the changelog (the counts start anew)");
      result("streams-restart-exact", counted);
    } finally {
      second.close("streams-restart-close");
    }
  }

  /** One running instance of the word count. */
  static final class App {
    final KafkaStreams streams;
    final AtomicReference<Throwable> crashed = new AtomicReference<>();
    final AtomicLong restored = new AtomicLong();

    App(Properties common, String appId, String stateDir) {
      StreamsBuilder builder = new StreamsBuilder();
      builder.stream(appId + "-input", Consumed.with(Serdes.String(), Serdes.String()))
          .flatMapValues(line -> Arrays.asList(line.split("\\s+")))
          .filter((key, word) -> !word.isEmpty())
          .groupBy((key, word) -> word, Grouped.with("words", Serdes.String(), Serdes.String()))
          .count(Materialized.as("word-counts"))
          .toStream()
          .to(appId + "-output", Produced.with(Serdes.String(), Serdes.Long()));

      Properties props = new Properties();
      props.putAll(common);
      props.put(StreamsConfig.APPLICATION_ID_CONFIG, appId);
      props.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG,
          EXACTLY_ONCE ? StreamsConfig.EXACTLY_ONCE_V2 : StreamsConfig.AT_LEAST_ONCE);
      props.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
      props.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 500);
      props.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 1);
      // Streams deletes what it has consumed of its repartition topic (DeleteRecords) at this
      // interval (default 30 s, longer than the whole run).
      props.put(StreamsConfig.REPARTITION_PURGE_INTERVAL_MS_CONFIG, 1000);

      streams = new KafkaStreams(builder.build(), props);
      streams.setUncaughtExceptionHandler(e -> {
        crashed.compareAndSet(null, e);
        return StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse.SHUTDOWN_CLIENT;
      });
      streams.setGlobalStateRestoreListener(new StateRestoreListener() {
        @Override
        public void onRestoreStart(TopicPartition partition, String store, long start, long end) {}

        @Override
        public void onBatchRestored(TopicPartition partition, String store, long end, long records) {}

        @Override
        public void onRestoreEnd(TopicPartition partition, String store, long total) {
          restored.addAndGet(total);
        }
      });
      streams.start();
    }

    /** Null while it runs or is starting; why not otherwise. */
    String trouble() {
      if (crashed.get() != null) return "the app crashed: " + describe(crashed.get());
      if (streams.state() == KafkaStreams.State.ERROR) return "the app is in state ERROR";
      return null;
    }

    void close(String check) {
      // Leaving the group (LeaveGroup) lets the next instance take over at once instead of
      // after this member's session timeout (45 s).
      boolean closed = streams.close(
          CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
              .withTimeout(Duration.ofSeconds(30)));
      result(check,
          closed && streams.state() == KafkaStreams.State.NOT_RUNNING && crashed.get() == null
              ? null
              : "closed=" + closed + " state=" + streams.state()
                  + (crashed.get() == null ? "" : " after a crash: " + describe(crashed.get())));
    }
  }

  /** Reads OUTPUT until every word's latest count is the expected one; null when it is. */
  static String readCounts(String bootstrap, String output, Map<String, Long> expected, App app,
      long deadline) {
    Properties props = new Properties();
    props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // Exactly once: only committed transactions count (an aborted one's counts never do).
    if (EXACTLY_ONCE) props.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
    Map<String, Long> latest = new HashMap<>();
    long records = 0;
    try (KafkaConsumer<String, Long> consumer =
        new KafkaConsumer<>(props, new StringDeserializer(), new LongDeserializer())) {
      List<TopicPartition> partitions = new ArrayList<>();
      consumer.partitionsFor(output).forEach(p -> partitions.add(new TopicPartition(output, p.partition())));
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      while (System.nanoTime() < deadline) {
        String trouble = app.trouble();
        if (trouble != null) return trouble;
        for (ConsumerRecord<String, Long> record : consumer.poll(Duration.ofMillis(500))) {
          // A word lives in one partition, read in order: the last record is its latest count.
          latest.put(record.key(), record.value());
          records++;
        }
        if (latest.equals(expected)) return null;
      }
    }
    Set<String> wrong = new TreeSet<>();
    for (String word : expected.keySet()) {
      if (!expected.get(word).equals(latest.get(word))) wrong.add(word);
    }
    Set<String> extra = new TreeSet<>(latest.keySet());
    extra.removeAll(expected.keySet());
    List<String> sample = new ArrayList<>();
    for (String word : wrong) {
      if (sample.size() == 5) break;
      sample.add(word + "=" + latest.get(word) + " (expected " + expected.get(word) + ")");
    }
    return "after the timeout " + records + " output records, " + wrong.size() + " of "
        + expected.size() + " words wrong, e.g. " + sample + ", words never in the input: " + extra
        + "; app state " + app.streams.state();
  }

  /**
   * Streams deletes the repartition topic's records once it has committed past them: every
   * partition's log start offset reaches its end (all was consumed and counted).
   */
  static void checkPurged(Properties common, String appId, long deadline) throws Exception {
    String repartition = appId + "-words-repartition";
    try (Admin admin = Admin.create(common)) {
      Map<TopicPartition, OffsetSpec> earliest = new HashMap<>();
      Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
      for (int p = 0; p < 3; p++) {
        earliest.put(new TopicPartition(repartition, p), OffsetSpec.earliest());
        latest.put(new TopicPartition(repartition, p), OffsetSpec.latest());
      }
      Map<TopicPartition, Long> starts = new TreeMap<>(Comparator.comparing(TopicPartition::partition));
      Map<TopicPartition, Long> ends = new TreeMap<>(Comparator.comparing(TopicPartition::partition));
      while (true) {
        admin.listOffsets(earliest).all().get().forEach((tp, info) -> starts.put(tp, info.offset()));
        admin.listOffsets(latest).all().get().forEach((tp, info) -> ends.put(tp, info.offset()));
        boolean purged = true;
        for (TopicPartition tp : ends.keySet()) {
          purged &= ends.get(tp) > 0 && starts.get(tp).equals(ends.get(tp));
        }
        if (purged) {
          result("streams-repartition-purged", null);
          return;
        }
        if (System.nanoTime() > deadline) {
          result("streams-repartition-purged", repartition + " log start offsets " + starts.values()
              + ", log end offsets " + ends.values() + " (expected equal: Streams deletes what it committed)");
          return;
        }
        Thread.sleep(250);
      }
    }
  }

  /** Streams made its repartition topic (delete) and its changelog topic (compact). */
  static void checkInternalTopics(Properties common, String appId) throws Exception {
    String repartition = appId + "-words-repartition";
    String changelog = appId + "-word-counts-changelog";
    try (Admin admin = Admin.create(common)) {
      Set<String> names = admin.listTopics().names().get();
      for (String topic : List.of(repartition, changelog)) {
        if (!names.contains(topic)) {
          result("streams-internal-topics", topic + " missing; topics: " + names);
          return;
        }
      }
      Map<String, TopicDescription> described =
          admin.describeTopics(List.of(repartition, changelog)).allTopicNames().get();
      ConfigResource repartitionResource = new ConfigResource(ConfigResource.Type.TOPIC, repartition);
      ConfigResource changelogResource = new ConfigResource(ConfigResource.Type.TOPIC, changelog);
      Map<ConfigResource, Config> configs =
          admin.describeConfigs(List.of(repartitionResource, changelogResource)).all().get();
      String changelogPolicy = configs.get(changelogResource).get("cleanup.policy").value();
      String repartitionPolicy = configs.get(repartitionResource).get("cleanup.policy").value();
      int changelogPartitions = described.get(changelog).partitions().size();
      int repartitionPartitions = described.get(repartition).partitions().size();
      // Both take the input's partition count (3), as Streams sizes them.
      result("streams-internal-topics",
          "compact".equals(changelogPolicy) && "delete".equals(repartitionPolicy)
                  && changelogPartitions == 3 && repartitionPartitions == 3
              ? null
              : changelog + ": cleanup.policy=" + changelogPolicy + ", " + changelogPartitions
                  + " partitions; " + repartition + ": cleanup.policy=" + repartitionPolicy + ", "
                  + repartitionPartitions + " partitions (expected compact and delete, 3 each)");
    }
  }
}
