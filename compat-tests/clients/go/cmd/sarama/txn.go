package main

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"

	"lmq/compat-tests/clients/go/internal/check"
)

// txnProducer is a transactional SyncProducer (idempotent, acks=all, one request in
// flight, as sarama requires) writing to the partitions records ask for.
func txnProducer(env *check.Env, txnID string) (sarama.SyncProducer, error) {
	c := config(env)
	c.Producer.Idempotent = true
	c.Producer.Transaction.ID = txnID
	c.Producer.Transaction.Timeout = 30 * time.Second
	c.Producer.Transaction.Retry.Max = 20
	c.Net.MaxOpenRequests = 1
	c.Producer.Partitioner = sarama.NewManualPartitioner
	producer, err := sarama.NewSyncProducer(brokers(env), c)
	if err != nil {
		return nil, check.Failf("NewSyncProducer with a transactional id: %w", err)
	}
	return producer, nil
}

func txnSend(producer sarama.SyncProducer, topic string, recs []check.Rec) error {
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = toMessage(topic, r)
	}
	if err := producer.SendMessages(msgs); err != nil {
		return sendFailure(msgs, err)
	}
	return nil
}

// transactions: the contract's scenario. sarama's AddOffsetsToTxn takes only the group id
// (its TxnOffsetCommit carries no member or generation), so the input is read by an
// assigned consumer and its offsets committed for the group with the transaction.
func transactions(ctx context.Context, env *check.Env) error {
	output, err := createTopic(ctx, env, 1, nil)
	if err != nil {
		return err
	}
	input, err := createTopic(ctx, env, 1, nil)
	if err != nil {
		return err
	}
	group, txnID := env.Name(), env.Name()
	inputs := check.TxnValues("in", 3)
	t1, t2, t3 := check.TxnValues("t1", 10), check.TxnValues("t2", 5), check.TxnValues("t3", 3)
	if err := produce(env, input, inputs, nil); err != nil {
		return err
	}
	first, err := txnProducer(env, txnID)
	if err != nil {
		return err
	}
	defer first.Close()
	for i, step := range []struct {
		recs   []check.Rec
		commit bool
	}{{t1, true}, {t2, false}} {
		if err := first.BeginTxn(); err != nil {
			return check.Failf("BeginTxn %d: %w", i+1, err)
		}
		if err := txnSend(first, output, step.recs); err != nil {
			return err
		}
		end, what := first.CommitTxn, "CommitTxn"
		if !step.commit {
			end, what = first.AbortTxn, "AbortTxn"
		}
		if err := end(); err != nil {
			return check.Failf("%s %d: %w", what, i+1, err)
		}
	}

	// Transaction 3: read the input, send its transform and the input's offsets for the group.
	c := config(env)
	c.Consumer.IsolationLevel = sarama.ReadCommitted
	in, err := openReaderWith(env, c, input, map[int32]int64{0: sarama.OffsetOldest})
	if err != nil {
		return err
	}
	read, err := check.ReadN(ctx, in, len(inputs))
	in.Close()
	if err != nil {
		return err
	}
	if err := check.CheckValues("the input consumer", read, inputs); err != nil {
		return err
	}
	if err := first.BeginTxn(); err != nil {
		return check.Failf("BeginTxn 3: %w", err)
	}
	if err := txnSend(first, output, t3); err != nil {
		return err
	}
	offsets := map[string][]*sarama.PartitionOffsetMetadata{input: {{Partition: 0, Offset: int64(len(inputs))}}}
	if err := first.AddOffsetsToTxn(offsets, group); err != nil {
		return check.Failf("AddOffsetsToTxn: %w", err)
	}
	if err := first.CommitTxn(); err != nil {
		return check.Failf("CommitTxn 3: %w", err)
	}
	// The offsets count once the commit marker reached the group's partition, which EndTxn
	// does not wait for: OffsetFetch is retried for a while.
	if err := check.Eventually(ctx, 10*time.Second, "the group's committed offset 3", func() (bool, string, error) {
		err := checkCommitted(env, group, input, int64(len(inputs)))
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return err
	}

	// A second producer with the same transactional id (sarama initialises it on creation)
	// fences the first.
	second, err := txnProducer(env, txnID)
	if err != nil {
		return err
	}
	second.Close()
	fenced := first.BeginTxn()
	if fenced == nil {
		fenced = txnSend(first, output, []check.Rec{{Key: []byte("fenced"), Value: []byte("fenced"), Partition: 0}})
	}
	if fenced == nil {
		fenced = first.CommitTxn()
	}
	if fenced == nil {
		return check.Failf("the fenced producer committed a transaction after a second producer with its transactional id initialised")
	}
	if !errors.Is(fenced, sarama.ErrProducerFenced) && !errors.Is(fenced, sarama.ErrInvalidProducerEpoch) {
		return check.Failf("the fenced producer failed with %v, expected PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", fenced)
	}
	check.Logf("first producer fenced: %v", fenced)

	for _, view := range []struct {
		level sarama.IsolationLevel
		name  string
		want  [][]check.Rec
	}{{sarama.ReadCommitted, "read_committed", [][]check.Rec{t1, t3}}, {sarama.ReadUncommitted, "read_uncommitted", [][]check.Rec{t1, t2, t3}}} {
		c := config(env)
		c.Consumer.IsolationLevel = view.level
		r, err := openReaderWith(env, c, output, map[int32]int64{0: sarama.OffsetOldest})
		if err != nil {
			return err
		}
		count := 0
		for _, w := range view.want {
			count += len(w)
		}
		got, err := check.ReadN(ctx, r, count)
		r.Close()
		if err != nil {
			return err
		}
		if err := check.CheckValues(view.name, got, view.want...); err != nil {
			return err
		}
	}
	return nil
}
