import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Consumer groups, scenario 3: Java KafkaConsumers with subscribe() (group.protocol=classic),
 * each on its own thread, on a 4-partition topic. Mode 'default' leaves partition.assignment.strategy
 * at its 4.x default ([RangeAssignor, CooperativeStickyAssignor]: the group must choose 'range',
 * so rebalances are eager); mode 'range' sets RangeAssignor (eager), mode 'cooperative'
 * CooperativeStickyAssignor (incremental rebalances). Checks, NAME = groups-java-MODE:
 *
 * <ul>
 *   <li>NAME-share: two members hold partitions, none twice, all 4 covered; the group's assignor
 *       (Admin describeConsumerGroups) is the expected one; 400 records are consumed exactly once,
 *       each by its partition's owner.
 *   <li>NAME-rebalance: a third member joining triggers a rebalance after which all three hold
 *       partitions (cooperative: the first two never gave up all of theirs); 400 more records
 *       are consumed exactly once by their owners.
 *   <li>NAME-commits: members commitSync() after each poll and when partitions are revoked;
 *       after all close, the group's committed offsets (Admin listConsumerGroupOffsets) are the
 *       log ends and no record was consumed twice.
 *   <li>NAME-resume: 200 records produced while the group is empty are read by a restarted
 *       member from exactly the committed offsets, each once, nothing older.
 * </ul>
 *
 * <p>usage: GroupConsumers BOOTSTRAP TOPIC default|range|cooperative — the group is named after
 * TOPIC. Prints 'PASS name' / 'FAIL name: reason' lines; progress on stderr.
 */
public final class GroupConsumers {
  static final int PARTITIONS = 4;

  static String bootstrap;
  static String topic;
  static String mode;
  static int failures = 0;

  /** One consumer on its own thread: its partitions, the records it read, its commits. */
  static final class Member implements Runnable {
    final String name;
    final Set<Integer> held = ConcurrentHashMap.newKeySet();
    final List<long[]> records = new ArrayList<>(); // {partition, offset}
    final List<String> values = new ArrayList<>();
    final List<String> errors = new ArrayList<>();
    final Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    volatile boolean stop = false;
    volatile boolean emptied = false; // held no partition at some point after first holding some
    volatile int commits = 0;
    final Thread thread;

    Member(String name) {
      this.name = name;
      this.thread = new Thread(this, name);
      thread.start();
    }

    synchronized List<String> values() {
      return new ArrayList<>(values);
    }

    synchronized List<long[]> records() {
      return new ArrayList<>(records);
    }

    synchronized List<String> errors() {
      return new ArrayList<>(errors);
    }

    synchronized void error(String what) {
      errors.add(what);
    }

    void commit(KafkaConsumer<String, String> consumer, Collection<TopicPartition> only) {
      Map<TopicPartition, OffsetAndMetadata> offsets = new HashMap<>();
      for (TopicPartition tp : only) if (pending.containsKey(tp)) offsets.put(tp, pending.get(tp));
      if (offsets.isEmpty()) return;
      try {
        consumer.commitSync(offsets, Duration.ofSeconds(30));
        offsets.keySet().forEach(pending::remove);
        commits++;
      } catch (Exception e) {
        error("commitSync " + offsets + ": " + e);
      }
    }

    @Override
    public void run() {
      Properties props = new Properties();
      props.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      props.put(ConsumerConfig.GROUP_ID_CONFIG, topic);
      props.put(ConsumerConfig.CLIENT_ID_CONFIG, name);
      props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
      props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
      props.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      props.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
      props.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "1000");
      props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
      props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
      if (mode.equals("cooperative")) {
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
      } else if (mode.equals("range")) {
        props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, RangeAssignor.class.getName());
      }
      try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
        consumer.subscribe(List.of(topic), new ConsumerRebalanceListener() {
          @Override
          public void onPartitionsRevoked(Collection<TopicPartition> partitions) {
            commit(consumer, partitions);
            drop(partitions);
          }

          @Override
          public void onPartitionsAssigned(Collection<TopicPartition> partitions) {
            for (TopicPartition tp : partitions) held.add(tp.partition());
          }

          @Override
          public void onPartitionsLost(Collection<TopicPartition> partitions) {
            error("partitions lost: " + partitions);
            drop(partitions);
          }
        });
        while (!stop) {
          ConsumerRecords<String, String> batch;
          try {
            batch = consumer.poll(Duration.ofMillis(200));
          } catch (Exception e) {
            error("poll: " + e);
            continue;
          }
          synchronized (this) {
            for (ConsumerRecord<String, String> r : batch) {
              records.add(new long[] {r.partition(), r.offset()});
              values.add(r.value());
              pending.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
            }
          }
          if (!batch.isEmpty()) commit(consumer, new ArrayList<>(pending.keySet()));
        }
        commit(consumer, new ArrayList<>(pending.keySet()));
      } catch (Exception e) {
        error("consumer: " + e);
      }
    }

    void drop(Collection<TopicPartition> partitions) {
      for (TopicPartition tp : partitions) held.remove(tp.partition());
      if (held.isEmpty() && !partitions.isEmpty()) emptied = true;
    }

    void close() throws InterruptedException {
      stop = true;
      thread.join(30_000);
      if (thread.isAlive()) error("did not close within 30 s");
    }

    @Override
    public String toString() {
      return name + " " + new TreeSet<>(held);
    }
  }

  public static void main(String[] args) throws Exception {
    bootstrap = args[0];
    topic = args[1];
    mode = args[2];
    if (!List.of("default", "range", "cooperative").contains(mode)) throw new IllegalArgumentException("mode " + mode);
    String prefix = "groups-java-" + mode;
    try {
      run(prefix);
    } catch (Exception e) {
      Throwable root = e;
      while (root.getCause() != null) root = root.getCause();
      result(prefix, e + (root != e ? " (cause: " + root + ")" : ""));
    }
    System.exit(failures > 0 ? 1 : 0);
  }

  static void result(String name, String failure) {
    if (failure == null || failure.isEmpty()) {
      System.out.println("PASS " + name);
    } else {
      failures++;
      System.out.println("FAIL " + name + ": " + failure.replace('\n', ' '));
    }
    System.out.flush();
  }

  static boolean waitFor(BooleanSupplier condition, int seconds) throws InterruptedException {
    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
    while (System.nanoTime() < deadline) {
      if (condition.getAsBoolean()) return true;
      Thread.sleep(200);
    }
    return condition.getAsBoolean();
  }

  /** Every member holds partitions, none twice, all covered. */
  static boolean shared(List<Member> members) {
    Set<Integer> union = new TreeSet<>();
    int total = 0;
    for (Member m : members) {
      Set<Integer> held = new TreeSet<>(m.held);
      if (held.isEmpty()) return false;
      union.addAll(held);
      total += held.size();
    }
    return total == PARTITIONS && union.size() == PARTITIONS;
  }

  static String errors(List<Member> members) {
    List<String> errs = new ArrayList<>();
    for (Member m : members) for (String e : m.errors()) errs.add(m.name + ": " + e);
    return errs.isEmpty() ? "" : "; client errors: " + errs.subList(0, Math.min(2, errs.size()));
  }

  static Map<String, RecordMetadata> produce(String phase, int count) throws Exception {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    Map<String, Future<RecordMetadata>> futures = new TreeMap<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < count; i++) {
        String value = phase + "-" + i;
        futures.put(value, producer.send(new ProducerRecord<>(topic, i % PARTITIONS, "k" + i, value)));
      }
      producer.flush();
      Map<String, RecordMetadata> acks = new TreeMap<>();
      for (Map.Entry<String, Future<RecordMetadata>> e : futures.entrySet()) {
        acks.put(e.getKey(), e.getValue().get(60, TimeUnit.SECONDS));
      }
      return acks;
    }
  }

  /** value → names of the members that consumed it (among values of PHASE). */
  static Map<String, List<String>> consumed(List<Member> members, String phase) {
    Map<String, List<String>> out = new TreeMap<>();
    for (Member m : members) {
      for (String v : m.values()) {
        if (v.startsWith(phase + "-")) out.computeIfAbsent(v, k -> new ArrayList<>()).add(m.name);
      }
    }
    return out;
  }

  /** Problems with PHASE's records: unconsumed, consumed twice, consumed by a non-owner. */
  static List<String> once(List<Member> members, String phase, Map<String, RecordMetadata> sent,
      Map<Integer, String> owner, int seconds) throws InterruptedException {
    waitFor(() -> consumed(members, phase).size() >= sent.size(), seconds);
    Map<String, List<String>> got = consumed(members, phase);
    List<String> problems = new ArrayList<>();
    if (got.size() < sent.size()) {
      problems.add("consumed " + got.size() + " of " + sent.size() + " records within " + seconds + " s" + errors(members));
    }
    for (Map.Entry<String, List<String>> e : got.entrySet()) {
      if (e.getValue().size() > 1) {
        problems.add("consumed twice: " + e.getKey() + " by " + e.getValue());
        break;
      }
    }
    if (owner != null) {
      for (Map.Entry<String, List<String>> e : got.entrySet()) {
        int p = sent.get(e.getKey()).partition();
        if (!e.getValue().get(0).equals(owner.get(p))) {
          problems.add(e.getKey() + " (partition " + p + ") consumed by " + e.getValue() + ", the owner is " + owner.get(p));
          break;
        }
      }
    }
    return problems;
  }

  static Map<Integer, String> owners(List<Member> members) {
    Map<Integer, String> owner = new TreeMap<>();
    for (Member m : members) for (int p : m.held) owner.put(p, m.name);
    return owner;
  }

  static void run(String prefix) throws Exception {
    Properties adminProps = new Properties();
    adminProps.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    List<Member> all = new ArrayList<>();
    try (Admin admin = Admin.create(adminProps)) {
      admin.createTopics(List.of(new NewTopic(topic, PARTITIONS, (short) 1))).all().get(60, TimeUnit.SECONDS);
      try {
        phases(prefix, admin, all);
      } finally {
        for (Member m : all) m.stop = true;
        for (Member m : all) m.thread.join(30_000);
      }
    }
  }

  static void phases(String prefix, Admin admin, List<Member> all) throws Exception {
    // 1. Two members share the partitions; records exactly once, by their owners.
    Member m1 = new Member("m1");
    Member m2 = new Member("m2");
    all.add(m1);
    all.add(m2);
    List<Member> two = List.of(m1, m2);
    if (!waitFor(() -> shared(two), 45)) {
      result(prefix + "-share", "after 45 s: " + two + errors(two));
      return;
    }
    System.err.println(prefix + ": two members " + two);
    List<String> problems = new ArrayList<>();
    String expected = mode.equals("cooperative") ? "cooperative-sticky" : "range";
    ConsumerGroupDescription described =
        admin.describeConsumerGroups(List.of(topic)).describedGroups().get(topic).get(60, TimeUnit.SECONDS);
    if (!expected.equals(described.partitionAssignor())) {
      problems.add("the group's assignor is '" + described.partitionAssignor() + "', expected '" + expected + "'");
    }
    if (described.members().size() != 2) {
      problems.add("describeConsumerGroups shows " + described.members().size() + " members, expected 2");
    }
    Map<String, RecordMetadata> sent1 = produce("one", 400);
    problems.addAll(once(two, "one", sent1, owners(two), 30));
    result(prefix + "-share", String.join("; ", problems));

    // 2. A third member joins: a rebalance, after which all three hold partitions.
    Member m3 = new Member("m3");
    all.add(m3);
    List<Member> three = List.of(m1, m2, m3);
    problems = new ArrayList<>();
    if (!waitFor(() -> shared(three), 45)) {
      result(prefix + "-rebalance", "45 s after a third member started: " + three + errors(three));
      return;
    }
    System.err.println(prefix + ": three members " + three + "; m1/m2 held nothing at some point: " + m1.emptied + "/" + m2.emptied);
    if (mode.equals("cooperative") && (m1.emptied || m2.emptied)) {
      problems.add("a member gave up all its partitions (m1 " + m1.emptied + ", m2 " + m2.emptied + "): an eager rebalance, not a cooperative one");
    }
    Map<String, RecordMetadata> sent2 = produce("two", 400);
    problems.addAll(once(three, "two", sent2, owners(three), 30));
    result(prefix + "-rebalance", String.join("; ", problems));

    // 3. All close (commit, LeaveGroup): committed offsets are the log ends, nothing read twice.
    problems = new ArrayList<>();
    for (Member m : three) m.close();
    int commits = 0;
    for (Member m : three) commits += m.commits;
    if (commits == 0) problems.add("no commitSync succeeded");
    Map<String, List<String>> got = consumed(three, "");
    for (Map.Entry<String, List<String>> e : got.entrySet()) {
      if (e.getValue().size() > 1) {
        problems.add("consumed twice: " + e.getKey() + " by " + e.getValue());
        break;
      }
    }
    Map<Integer, Long> ends = new TreeMap<>();
    for (RecordMetadata md : sent1.values()) ends.merge(md.partition(), md.offset() + 1, Math::max);
    for (RecordMetadata md : sent2.values()) ends.merge(md.partition(), md.offset() + 1, Math::max);
    Map<Integer, Long> committed = new TreeMap<>();
    for (Map.Entry<TopicPartition, OffsetAndMetadata> e : admin.listConsumerGroupOffsets(topic)
        .partitionsToOffsetAndMetadata().get(60, TimeUnit.SECONDS).entrySet()) {
      if (e.getValue() != null) committed.put(e.getKey().partition(), e.getValue().offset());
    }
    if (!committed.equals(ends)) problems.add("committed offsets " + committed + " after all closed, log ends " + ends);
    problems.addAll(errorsOf(three));
    result(prefix + "-commits", String.join("; ", problems));

    // 4. Records produced while the group is empty: a restarted member reads exactly them.
    Map<String, RecordMetadata> sent3 = produce("three", 200);
    Member m4 = new Member("m4");
    all.add(m4);
    List<Member> one = List.of(m4);
    problems = new ArrayList<>(once(one, "three", sent3, null, 45));
    Map<Integer, Long> first = new TreeMap<>();
    for (long[] r : m4.records()) first.merge((int) r[0], r[1], Math::min);
    if (!first.equals(committed)) problems.add("first offsets read after the restart " + first + ", committed " + committed);
    long older = m4.values().stream().filter(v -> !v.startsWith("three-")).count();
    if (older > 0) problems.add(older + " records from before the restart read again");
    m4.close();
    result(prefix + "-resume", String.join("; ", problems));
  }

  /** Client errors other than the expected rebalance ones, as problems. */
  static List<String> errorsOf(List<Member> members) {
    List<String> out = new ArrayList<>();
    for (Member m : members) {
      for (String e : m.errors()) out.add(m.name + ": " + e);
    }
    return out.isEmpty() ? out : List.of("client errors: " + out.subList(0, Math.min(2, out.size())));
  }
}
