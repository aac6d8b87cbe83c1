/*
 * librdkafka's producer at saturation, for scripts/bench.sh: the same load lmq-perf and
 * Kafka's ProducerPerformance send, through the C client most non-Java clients wrap.
 *
 *   rdkafka-perf BOOTSTRAP TOPIC RECORDS RECORD_BYTES LINGER_MS BATCH_BYTES ACKS CODEC
 *
 * Sends RECORDS records of RECORD_BYTES incompressible bytes (keyless, so librdkafka's sticky
 * partitioner spreads batches), waits for every delivery report and prints one JSON object:
 * records acknowledged, failed, seconds from the first send to the last report, records/s
 * and MB/s (10^6 bytes of record values).
 */
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long delivered, failed;
static char first_error[256];

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *message, void *opaque) {
  (void)rk;
  (void)opaque;
  if (message->err) {
    if (failed++ == 0) {
      snprintf(first_error, sizeof first_error, "%s", rd_kafka_err2str(message->err));
    }
  } else {
    delivered++;
  }
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *conf, const char *name, const char *value) {
  char error[512];
  if (rd_kafka_conf_set(conf, name, value, error, sizeof error) != RD_KAFKA_CONF_OK) {
    fprintf(stderr, "rdkafka-perf: %s=%s: %s\n", name, value, error);
    exit(2);
  }
}

int main(int argc, char **argv) {
  if (argc != 9) {
    fprintf(stderr,
            "usage: rdkafka-perf BOOTSTRAP TOPIC RECORDS RECORD_BYTES LINGER_MS BATCH_BYTES "
            "ACKS CODEC\n");
    return 2;
  }
  const char *topic = argv[2];
  long records = atol(argv[3]);
  size_t record_bytes = (size_t)atol(argv[4]);
  if (records <= 0 || record_bytes == 0) {
    fprintf(stderr, "rdkafka-perf: RECORDS and RECORD_BYTES must be positive\n");
    return 2;
  }
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  set(conf, "bootstrap.servers", argv[1]);
  set(conf, "linger.ms", argv[5]);
  set(conf, "batch.size", argv[6]);
  set(conf, "acks", argv[7]);
  set(conf, "compression.codec", argv[8]);
  /* Same as ProducerPerformance's runs: no idempotence, so both tools do the same work. */
  set(conf, "enable.idempotence", "false");
  set(conf, "queue.buffering.max.kbytes", "65536");
  rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
  char error[512];
  rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, conf, error, sizeof error);
  if (!producer) {
    fprintf(stderr, "rdkafka-perf: %s\n", error);
    return 2;
  }
  /* A pool of random payloads, so records do not compress and cost no time to make. */
  enum { POOL = 64 };
  char *pool = malloc(record_bytes * POOL);
  if (!pool) {
    fprintf(stderr, "rdkafka-perf: out of memory\n");
    return 2;
  }
  srand(42);
  for (size_t i = 0; i < record_bytes * POOL; i++) pool[i] = (char)rand();

  double started = now_s();
  for (long i = 0; i < records; i++) {
    char *value = pool + (size_t)(i % POOL) * record_bytes;
    for (;;) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          producer, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_VALUE(value, record_bytes),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        fprintf(stderr, "rdkafka-perf: produce: %s\n", rd_kafka_err2str(err));
        return 1;
      }
      /* Back-pressure: serve delivery reports until the queue has room. */
      rd_kafka_poll(producer, 10);
    }
    rd_kafka_poll(producer, 0);
  }
  rd_kafka_resp_err_t flushed = rd_kafka_flush(producer, 120 * 1000);
  double seconds = now_s() - started;
  rd_kafka_destroy(producer);
  free(pool);
  printf("{\"records\": %ld, \"delivered\": %ld, \"failed\": %ld, \"seconds\": %.3f, "
         "\"produce_records_per_s\": %.1f, \"produce_mb_per_s\": %.2f, \"first_error\": \"%s\", "
         "\"flushed\": %s}\n",
         records, delivered, failed, seconds, (double)delivered / seconds,
         (double)delivered * (double)record_bytes / seconds / 1e6, first_error,
         flushed == RD_KAFKA_RESP_ERR_NO_ERROR ? "true" : "false");
  return delivered == records ? 0 : 1;
}
