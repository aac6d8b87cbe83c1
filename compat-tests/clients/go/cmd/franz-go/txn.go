package main

import (
	"context"
	"errors"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"lmq/compat-tests/clients/go/internal/check"
)

// txnProduce sends recs inside the client's open transaction and waits for every
// acknowledgement.
func txnProduce(ctx context.Context, produce func(context.Context, ...*kgo.Record) kgo.ProduceResults, topic string, recs []check.Rec) error {
	krs := make([]*kgo.Record, len(recs))
	for i, r := range recs {
		krs[i] = toKgo(topic, r)
	}
	if err := produce(ctx, krs...).FirstErr(); err != nil {
		return check.Failf("transactional send of %s..: %w", recs[0].Value, err)
	}
	return nil
}

// transactions: the contract's scenario. The transactional producer is a
// GroupTransactSession (kgo's consume-transform-produce client: the group's offsets go
// with the transaction it ends); transactions 1 and 2 go through its plain client, whose
// EndTransaction commits no offsets.
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
	if err := produce(ctx, env, input, inputs); err != nil {
		return err
	}
	sess, err := kgo.NewGroupTransactSession(
		kgo.SeedBrokers(env.Bootstrap),
		kgo.ClientID(env.ClientID()),
		kgo.RetryTimeout(30*time.Second),
		kgo.TransactionalID(txnID),
		kgo.TransactionTimeout(30*time.Second),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.SessionTimeout(10*time.Second),
	)
	if err != nil {
		return check.Failf("kgo.NewGroupTransactSession: %v", err)
	}
	defer sess.Close()
	cl := sess.Client()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		return check.Failf("InitProducerId with transactional id: %v", err)
	}
	for i, step := range []struct {
		recs []check.Rec
		end  kgo.TransactionEndTry
	}{{t1, kgo.TryCommit}, {t2, kgo.TryAbort}} {
		if err := cl.BeginTransaction(); err != nil {
			return check.Failf("BeginTransaction %d: %v", i+1, err)
		}
		if err := txnProduce(ctx, cl.ProduceSync, output, step.recs); err != nil {
			return err
		}
		if err := cl.EndTransaction(ctx, step.end); err != nil {
			return check.Failf("EndTransaction %d: %v", i+1, err)
		}
	}

	// Transaction 3: the session's group member reads the input; End commits its offsets.
	var read []check.Rec
	deadline := time.Now().Add(check.ReadDeadline)
	for len(read) < len(inputs) && time.Now().Before(deadline) {
		pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		fetches := sess.PollFetches(pctx)
		cancel()
		if err := fetchError(fetches); err != nil {
			return err
		}
		fetches.EachRecord(func(kr *kgo.Record) { read = append(read, fromKgo(kr)) })
	}
	if err := check.CheckValues("the group member", read, inputs); err != nil {
		return err
	}
	if err := sess.Begin(); err != nil {
		return check.Failf("GroupTransactSession.Begin: %v", err)
	}
	if err := txnProduce(ctx, sess.ProduceSync, output, t3); err != nil {
		return err
	}
	committed, err := sess.End(ctx, kgo.TryCommit)
	if err != nil || !committed {
		return check.Failf("GroupTransactSession.End(TryCommit): committed %v, error %v", committed, err)
	}
	// The offsets count once the commit marker reached the group's partition, which EndTxn
	// does not wait for: OffsetFetch is retried for a while.
	if err := check.Eventually(ctx, 10*time.Second, "the group's committed offset 3", func() (bool, string, error) {
		err := checkCommitted(ctx, env, group, input, int64(len(inputs)))
		if err != nil {
			return false, err.Error(), nil
		}
		return true, "", nil
	}); err != nil {
		return err
	}

	// A second producer with the same transactional id fences the first.
	second, err := newClient(env, kgo.TransactionalID(txnID), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		return err
	}
	_, _, err = second.ProducerID(ctx)
	second.Close()
	if err != nil {
		return check.Failf("the second producer's InitProducerId: %v", err)
	}
	fenced := cl.BeginTransaction()
	if fenced == nil {
		fenced = txnProduce(ctx, cl.ProduceSync, output, []check.Rec{{Key: []byte("fenced"), Value: []byte("fenced")}})
	}
	if fenced == nil {
		fenced = cl.EndTransaction(ctx, kgo.TryCommit)
	}
	if fenced == nil {
		return check.Failf("the fenced producer committed a transaction after a second producer with its transactional id initialised")
	}
	if !errors.Is(fenced, kerr.ProducerFenced) && !errors.Is(fenced, kerr.InvalidProducerEpoch) {
		return check.Failf("the fenced producer failed with %v, expected PRODUCER_FENCED or INVALID_PRODUCER_EPOCH", fenced)
	}
	check.Logf("first producer fenced: %v", fenced)
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		check.Logf("aborting the fenced transaction: %v", err)
	}

	for _, view := range []struct {
		level kgo.IsolationLevel
		name  string
		want  [][]check.Rec
	}{{kgo.ReadCommitted(), "read_committed", [][]check.Rec{t1, t3}}, {kgo.ReadUncommitted(), "read_uncommitted", [][]check.Rec{t1, t2, t3}}} {
		reader, err := partitionConsumer(env, output, map[int32]kgo.Offset{0: kgo.NewOffset().AtStart()}, kgo.FetchIsolationLevel(view.level))
		if err != nil {
			return err
		}
		count := 0
		for _, w := range view.want {
			count += len(w)
		}
		got, err := check.ReadN(ctx, poller{reader}, count)
		reader.Close()
		if err != nil {
			return err
		}
		if err := check.CheckValues(view.name, got, view.want...); err != nil {
			return err
		}
	}
	return nil
}
