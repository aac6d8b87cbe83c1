import java.nio.charset.StandardCharsets;
import java.util.Properties;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Where the Java producer puts keyed records: a KafkaProducer with its default partitioner
 * sends COUNT records keyed {@link #key(int)} and prints "KEY PARTITION" per acknowledged
 * record. The native client's test compares its own choices with these.
 *
 * <p>usage (source launch): java -cp KAFKA_CLASSPATH KeyedPartitions.java BOOTSTRAP TOPIC COUNT
 */
public final class KeyedPartitions {
  /** Keys of every length modulo 4, so murmur2's tail handling is covered. */
  static String key(int index) {
    return "key-" + index + "-" + "x".repeat(index % 9);
  }

  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    int count = Integer.parseInt(args[2]);
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      for (int index = 0; index < count; index++) {
        String key = key(index);
        RecordMetadata meta =
            producer
                .send(
                    new ProducerRecord<>(
                        args[1],
                        key.getBytes(StandardCharsets.UTF_8),
                        "v".getBytes(StandardCharsets.UTF_8)))
                .get();
        System.out.println(key + " " + meta.partition());
      }
    }
  }
}
