import java.io.FileReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client of compat-tests/secure-matrix.sh: with the client properties of a secured
 * listener (SSL with a client certificate, SASL_SSL with OAUTHBEARER, ...), a KafkaProducer
 * (acks=all) sends 3 records to partition 0 of TOPIC and a KafkaConsumer (assigned, no group)
 * reads them back from the beginning.
 *
 * <p>usage: SecureClient PROPERTIES TOPIC — prints one line: 'OK 3 records', 'REFUSED
 * ExceptionClass: message' (the Kafka exception the client reported, e.g. a refused
 * authentication) or 'FAIL reason'.
 */
public final class SecureClient {
  static final int COUNT = 3;

  public static void main(String[] args) {
    String line;
    try {
      line = run(args[0], args[1]);
    } catch (Throwable e) {
      line = describe(e);
    }
    System.out.println(line.replace('\n', ' '));
    System.exit(0);
  }

  /** The first Kafka exception of the cause chain, as the client reports it. */
  static String describe(Throwable e) {
    for (Throwable t = e; t != null; t = t.getCause()) {
      if (t instanceof KafkaException) {
        return "REFUSED " + t.getClass().getSimpleName() + ": " + t.getMessage();
      }
    }
    return "FAIL " + e;
  }

  static String run(String propertiesFile, String topic) throws Exception {
    Properties common = new Properties();
    try (FileReader reader = new FileReader(propertiesFile, StandardCharsets.UTF_8)) {
      common.load(reader);
    }
    String run = Long.toString(System.nanoTime());
    Properties producerProps = new Properties();
    producerProps.putAll(common);
    producerProps.put(ProducerConfig.ACKS_CONFIG, "all");
    producerProps.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "20000");
    producerProps.put(ProducerConfig.DELIVERY_TIMEOUT_MS_CONFIG, "30000");
    producerProps.put(ProducerConfig.REQUEST_TIMEOUT_MS_CONFIG, "20000");
    List<String> sent = new ArrayList<>();
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(producerProps, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < COUNT; i++) {
        String value = "secure-" + run + "-" + i;
        producer.send(new ProducerRecord<>(topic, 0, null, value)).get();
        sent.add(value);
      }
    }
    Properties consumerProps = new Properties();
    consumerProps.putAll(common);
    consumerProps.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    consumerProps.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    List<String> read = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(consumerProps, new StringDeserializer(), new StringDeserializer())) {
      TopicPartition partition = new TopicPartition(topic, 0);
      consumer.assign(List.of(partition));
      consumer.seekToBeginning(List.of(partition));
      long deadline = System.currentTimeMillis() + 30_000;
      while (System.currentTimeMillis() < deadline && !read.containsAll(sent)) {
        for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(500))) {
          read.add(record.value());
        }
      }
    }
    if (!read.containsAll(sent)) {
      return "FAIL read " + read + ", expected to include " + sent;
    }
    return "OK " + COUNT + " records";
  }
}
