// The franz-go client of compat-tests/secure-matrix.sh: over SASL_PLAINTEXT with PLAIN, a
// producer (acks=all) sends 3 records to partition 0 of TOPIC and a consumer (assigned, no
// group) reads them back from the beginning.
//
// usage: secure-franz-go BOOTSTRAP USER PASSWORD TOPIC — prints one line: "OK 3 records",
// "REFUSED <Kafka error name>: <message>" (the broker's error the client reported, e.g.
// SASL_AUTHENTICATION_FAILED) or "FAIL <reason>".
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
)

const count = 3

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: secure-franz-go BOOTSTRAP USER PASSWORD TOPIC")
		os.Exit(2)
	}
	line, err := run(os.Args[1], os.Args[2], os.Args[3], os.Args[4])
	if err != nil {
		var kafkaErr *kerr.Error
		if errors.As(err, &kafkaErr) {
			line = fmt.Sprintf("REFUSED %s: %v", kafkaErr.Message, err)
		} else {
			line = fmt.Sprintf("FAIL %v", err)
		}
	}
	fmt.Println(strings.ReplaceAll(line, "\n", " "))
}

func run(bootstrap, user, password, topic string) (string, error) {
	auth := kgo.SASL(plain.Auth{User: user, Pass: password}.AsMechanism())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	producer, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap), auth,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		// A refused login is retried until these run out (franz-go then reports the
		// broker's error): short, as a healthy broker answers at once.
		kgo.RecordDeliveryTimeout(10*time.Second),
		kgo.RetryTimeout(10*time.Second),
	)
	if err != nil {
		return "", err
	}
	defer producer.Close()
	run := time.Now().UnixNano()
	var sent []string
	for i := 0; i < count; i++ {
		value := fmt.Sprintf("secure-%d-%d", run, i)
		record := &kgo.Record{Topic: topic, Partition: 0, Value: []byte(value)}
		if err := producer.ProduceSync(ctx, record).FirstErr(); err != nil {
			return "", err
		}
		sent = append(sent, value)
	}
	consumer, err := kgo.NewClient(
		kgo.SeedBrokers(bootstrap), auth,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.RetryTimeout(20*time.Second),
	)
	if err != nil {
		return "", err
	}
	defer consumer.Close()
	read := map[string]bool{}
	readCtx, readCancel := context.WithTimeout(ctx, 30*time.Second)
	defer readCancel()
	for len(read) < count {
		fetches := consumer.PollFetches(readCtx)
		if readCtx.Err() != nil {
			return fmt.Sprintf("FAIL read %d of the %d records sent", len(read), count), nil
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			return "", errs[0].Err
		}
		fetches.EachRecord(func(record *kgo.Record) {
			for _, value := range sent {
				if value == string(record.Value) {
					read[value] = true
				}
			}
		})
	}
	return fmt.Sprintf("OK %d records", count), nil
}
