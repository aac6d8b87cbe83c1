'use strict'
// The kafkajs family of the compatibility matrix (see ../CONTRACT.md).
//
//   node scenarios.js --list                 the scenario names, one a line
//   node scenarios.js BOOTSTRAP SCENARIO     runs one scenario: one PASS/FAIL/N/A line on stdout
//
// Every Kafka request is made by kafkajs (producer, consumer, admin). kafkajs's own logs go
// to stderr at ERROR level, so stdout carries the result line only.

const crypto = require('crypto')
const {
  Kafka,
  logLevel,
  CompressionTypes,
  CompressionCodecs,
  ConfigResourceTypes,
  Partitioners,
} = require('kafkajs')

const SCENARIO_TIMEOUT_MS = 85000 // `run` kills the process at 90 s
const CONSUME_TIMEOUT_MS = 30000

// ---------------------------------------------------------------------------------------
// Optional codecs: kafkajs ships gzip only; snappy and lz4 come from kafkajs-snappy and
// kafkajs-lz4 (pinned in package.json). A codec that does not load makes its scenario N/A.

const codecProblems = {}
const availableCodecs = new Set(['gzip'])
try {
  CompressionCodecs[CompressionTypes.Snappy] = require('kafkajs-snappy')
  availableCodecs.add('snappy')
} catch (e) {
  codecProblems.snappy = `kafkajs-snappy did not load: ${e.message}`
}
try {
  const LZ4Codec = require('kafkajs-lz4')
  CompressionCodecs[CompressionTypes.LZ4] = new LZ4Codec().codec
  availableCodecs.add('lz4')
} catch (e) {
  codecProblems.lz4 = `kafkajs-lz4 (optional, native lz4 addon) did not load: ${e.message}`
}
codecProblems.zstd =
  'kafkajs has no built-in zstd codec, and its codec package @kafkajs/zstd 0.1.1 does not ' +
  'install on Node 20 (its native dependency cppzst 2.0.6 fails to compile against the ' +
  'Node 20 headers, which need C++17)'

// ---------------------------------------------------------------------------------------
// Results and small helpers

class Failure extends Error {}
class NotApplicable extends Error {}

const fail = message => {
  throw new Failure(message)
}
const check = (condition, message) => {
  if (!condition) fail(message)
}
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))
const oneLine = text => String(text).replace(/\s+/g, ' ').trim()
const show = value => (value == null ? String(value) : JSON.stringify(value))
const describeError = e =>
  oneLine(
    `${e.name}${e.type ? ` [${e.type}]` : ''}: ${e.message}` +
      (e.apiName ? ` (API ${e.apiName}, key ${e.apiKey})` : '') +
      (e.cause && e.cause !== e ? ` (cause: ${describeError(e.cause)})` : '')
  )

// kafkajs reports some protocol errors wrapped (KafkaJSNonRetriableError, KafkaJSAggregateError,
// KafkaJSCreateTopicError...): the protocol error types found anywhere in the chain.
function errorTypes(e, seen = new Set()) {
  if (!e || typeof e !== 'object' || seen.has(e)) return []
  seen.add(e)
  const types = e.type ? [e.type] : []
  for (const inner of [e.cause, e.originalError, ...(Array.isArray(e.errors) ? e.errors : [])]) {
    types.push(...errorTypes(inner, seen))
  }
  return types
}

const uniqueName = scenario =>
  `compat-kafkajs-${scenario}-${Date.now().toString(36)}${crypto.randomBytes(3).toString('hex')}`

async function waitFor(condition, timeoutMs, stepMs = 50) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (condition()) return true
    await sleep(stepMs)
  }
  return condition()
}

// ---------------------------------------------------------------------------------------
// The scenario context: one Kafka instance, every client it opens is disconnected at the end.

class Context {
  constructor(bootstrap, scenario) {
    this.scenario = scenario
    this.logs = [] // every kafkajs log entry, for the scenarios that read the client's reports
    this.clients = []
    const logs = this.logs
    this.kafka = new Kafka({
      clientId: `compat-kafkajs-${scenario}`,
      brokers: [bootstrap],
      logLevel: logLevel.ERROR,
      logCreator: () => ({ namespace, label, log }) => {
        logs.push({ namespace, label, log })
        const { message, timestamp, logger, ...extra } = log
        process.stderr.write(`[kafkajs ${label}] ${namespace}: ${message} ${JSON.stringify(extra)}\n`)
      },
    })
  }

  name(suffix = '') {
    return uniqueName(this.scenario) + suffix
  }

  async admin() {
    const admin = this.kafka.admin()
    this.clients.push(admin)
    await admin.connect()
    return admin
  }

  async producer(options = {}) {
    const producer = this.kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, ...options })
    this.clients.push(producer)
    await producer.connect()
    return producer
  }

  consumer(options = {}) {
    const consumer = this.kafka.consumer({
      groupId: this.name('-group'),
      maxWaitTimeInMs: 500,
      heartbeatInterval: 1000,
      sessionTimeout: 10000,
      ...options,
    })
    this.clients.push(consumer)
    return consumer
  }

  async close() {
    const closing = this.clients.reverse().map(client =>
      Promise.race([client.disconnect().catch(() => {}), sleep(5000)])
    )
    await Promise.all(closing)
  }
}

async function createTopic(admin, topic, numPartitions = 3, configEntries = undefined) {
  const created = await admin.createTopics({
    topics: [{ topic, numPartitions, replicationFactor: 1, configEntries }],
    waitForLeaders: true,
  })
  check(created, `createTopics(${topic}) answered that the topic already exists`)
}

// Sends `messages` (each with an explicit partition) in one send() call and returns them
// with the partition and offset the acknowledgement gave: kafkajs returns one base offset per
// partition, and a partition's messages keep their order in its batch.
async function produceAcked(producer, topic, messages, { acks = -1, compression } = {}) {
  const acknowledged = await producer.send({ topic, messages, acks, compression })
  const baseOffsets = new Map()
  for (const metadata of acknowledged) {
    check(metadata.errorCode === 0, `produce to partition ${metadata.partition} got error code ${metadata.errorCode}`)
    baseOffsets.set(metadata.partition, BigInt(metadata.baseOffset))
  }
  const next = new Map()
  return messages.map(message => {
    const base = baseOffsets.get(message.partition)
    check(base !== undefined, `the acknowledgement has no entry for partition ${message.partition}`)
    const index = next.get(message.partition) || 0n
    next.set(message.partition, index + 1n)
    return { ...message, offset: base + index }
  })
}

// Consumes `topic` with a new group consumer (kafkajs has no manual assignment: a group of
// one is assigned every partition) until `enough(records)` holds, then `settleMs` more to
// catch duplicates or extra records. `seeks` positions partitions explicitly.
async function consume(ctx, topic, { enough, fromBeginning = true, seeks = [], settleMs = 1000, onRunning, options } = {}) {
  const consumer = ctx.consumer(options)
  const records = []
  await consumer.connect()
  await consumer.subscribe({ topic, fromBeginning })
  await consumer.run({
    eachMessage: async ({ partition, message }) => {
      records.push({
        partition,
        offset: BigInt(message.offset),
        key: message.key,
        value: message.value,
        headers: message.headers,
        timestamp: message.timestamp,
      })
    },
  })
  for (const seek of seeks) consumer.seek({ topic, ...seek })
  if (onRunning) await onRunning(consumer, records)
  await waitFor(() => enough(records), CONSUME_TIMEOUT_MS)
  await sleep(settleMs)
  await consumer.disconnect()
  return records
}

const atLeast = count => records => records.length >= count

// Header pairs in a comparable form: kafkajs gives a repeated key as an array of values.
function headerPairs(headers) {
  const pairs = []
  for (const [key, value] of Object.entries(headers || {})) {
    for (const one of Array.isArray(value) ? value : [value]) {
      pairs.push([key, one == null ? null : Buffer.from(one).toString('hex')])
    }
  }
  return pairs
}

const sameBytes = (a, b) => (a == null || b == null ? a == null && b == null : Buffer.from(a).equals(Buffer.from(b)))

// The full round trip: every record read back once, at the acknowledged partition and
// offset, with the key, value and headers sent, in send order within each partition.
function checkRoundTrip(sent, records) {
  const seen = new Map()
  for (const record of records) {
    const where = `${record.partition}:${record.offset}`
    check(!seen.has(where), `record at partition ${record.partition} offset ${record.offset} was delivered twice`)
    seen.set(where, record)
  }
  check(records.length === sent.length, `expected ${sent.length} records, read ${records.length}`)
  for (const message of sent) {
    const where = `${message.partition}:${message.offset}`
    const record = seen.get(where)
    check(record, `record sent to partition ${message.partition} (acknowledged offset ${message.offset}) was not read back`)
    check(sameBytes(record.key, message.key), `key at ${where}: expected ${show(message.key)}, got ${show(record.key)}`)
    check(sameBytes(record.value, message.value), `value at ${where} differs from the one sent (${record.value == null ? 'null' : record.value.length + ' bytes'})`)
    const expectedHeaders = JSON.stringify(headerPairs(message.headers))
    const gotHeaders = JSON.stringify(headerPairs(record.headers))
    check(expectedHeaders === gotHeaders, `headers at ${where}: expected ${expectedHeaders}, got ${gotHeaders}`)
  }
  checkOrderPerPartition(records)
}

function checkOrderPerPartition(records) {
  const last = new Map()
  for (const record of records) {
    const previous = last.get(record.partition)
    check(previous === undefined || record.offset > previous, `partition ${record.partition}: offset ${record.offset} delivered after ${previous}`)
    last.set(record.partition, record.offset)
  }
}

// For producers without per-record acknowledgements (acks=0, several idempotent sends):
// values `v-<i>` read back exactly once each, with key `k-<i>`, and in send order per partition.
function checkValuesInSendOrder(count, records) {
  const indexOf = record => {
    const match = /^v-(\d+)$/.exec(record.value ? record.value.toString() : '')
    check(match, `unexpected value ${show(record.value && record.value.toString())}`)
    return Number(match[1])
  }
  const seen = new Set()
  const lastIndex = new Map()
  for (const record of records) {
    const index = indexOf(record)
    check(!seen.has(index), `value v-${index} read twice`)
    seen.add(index)
    check(record.key && record.key.toString() === `k-${index}`, `value v-${index} came with key ${show(record.key && record.key.toString())}`)
    const previous = lastIndex.get(record.partition)
    check(previous === undefined || index > previous, `partition ${record.partition}: v-${index} read after v-${previous}`)
    lastIndex.set(record.partition, index)
  }
  checkOrderPerPartition(records)
  check(records.length === count, `expected ${count} records, read ${records.length}`)
}

const numbered = (count, partitions) =>
  Array.from({ length: count }, (_, i) => ({
    key: Buffer.from(`k-${i}`),
    value: Buffer.from(`v-${i}`),
    ...(partitions ? { partition: i % partitions } : {}),
  }))

const toPartition0 = (count, prefix = 'v') =>
  Array.from({ length: count }, (_, i) => ({ partition: 0, key: null, value: Buffer.from(`${prefix}-${i}`) }))

// Checks that `records` are exactly partition 0's offsets first..first+values.length-1 with those values.
function checkPartition0(records, first, values) {
  const others = records.filter(r => r.partition !== 0)
  check(others.length === 0, `read ${others.length} records from partitions other than 0`)
  const offsets = records.map(r => r.offset)
  check(
    records.length === values.length,
    `expected offsets ${first}..${first + values.length - 1}, read ${records.length} records (offsets ${offsets.slice(0, 3).join(',')}${offsets.length > 3 ? ',...' : ''})`
  )
  records.forEach((record, i) => {
    check(record.offset === BigInt(first + i), `expected offset ${first + i} at position ${i}, got ${record.offset}`)
    check(record.value && record.value.toString() === values[i], `offset ${record.offset}: expected value ${values[i]}, got ${show(record.value && record.value.toString())}`)
  })
}

// ---------------------------------------------------------------------------------------
// Scenarios

const scenarios = {}

scenarios['metadata'] = async ctx => {
  const admin = await ctx.admin()
  const cluster = await admin.describeCluster()
  check(cluster.brokers.length >= 1, `describeCluster listed no broker`)
  for (const broker of cluster.brokers) {
    check(broker.host && broker.port > 0, `broker without host/port: ${show(broker)}`)
  }
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const metadata = await admin.fetchTopicMetadata({ topics: [topic] })
  const found = metadata.topics.find(t => t.name === topic)
  check(found, `fetchTopicMetadata did not return ${topic}`)
  check(found.partitions.length === 3, `expected 3 partitions, got ${found.partitions.length}`)
  for (const partition of found.partitions) {
    check(partition.leader >= 0, `partition ${partition.partitionId} has no leader (${partition.leader})`)
    check(cluster.brokers.some(b => b.nodeId === partition.leader), `partition ${partition.partitionId} leader ${partition.leader} is not a listed broker`)
  }
}

scenarios['produce-acks-0'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  // keyed records, partitioned by kafkajs's default partitioner; acks=0 has no acknowledgement
  const acknowledged = await producer.send({ topic, messages: numbered(200), acks: 0 })
  check(acknowledged.length === 0, `acks=0 send returned an acknowledgement: ${show(acknowledged)}`)
  const records = await consume(ctx, topic, { enough: atLeast(200) })
  checkValuesInSendOrder(200, records)
}

for (const [scenario, acks] of [['produce-acks-1', 1], ['produce-acks-all', -1]]) {
  scenarios[scenario] = async ctx => {
    const admin = await ctx.admin()
    const topic = ctx.name()
    await createTopic(admin, topic, 3)
    const producer = await ctx.producer()
    const sent = await produceAcked(producer, topic, numbered(200, 3), { acks })
    const records = await consume(ctx, topic, { enough: atLeast(200) })
    checkRoundTrip(sent, records)
  }
}

for (const [codec, type] of [
  ['gzip', CompressionTypes.GZIP],
  ['snappy', CompressionTypes.Snappy],
  ['lz4', CompressionTypes.LZ4],
  ['zstd', CompressionTypes.ZSTD],
]) {
  scenarios[`compression-${codec}`] = async ctx => {
    if (!availableCodecs.has(codec)) throw new NotApplicable(codecProblems[codec] || `kafkajs has no ${codec} codec`)
    const admin = await ctx.admin()
    const topic = ctx.name()
    await createTopic(admin, topic, 3)
    const producer = await ctx.producer()
    const messages = numbered(200, 3).map((m, i) => ({ ...m, value: Buffer.from(`v-${i} ${'compressible '.repeat(20)}`) }))
    const sent = await produceAcked(producer, topic, messages, { acks: -1, compression: type })
    const records = await consume(ctx, topic, { enough: atLeast(200) })
    checkRoundTrip(sent, records)
  }
}

scenarios['keys-headers-nulls'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  // 60 records: every 10th (i%10 == 3) has a null key, every 10th (i%10 == 7) a null value;
  // the 54 keys are 5 bytes each from a running counter, so all 256 byte values occur. Each
  // record has two headers under one repeated key, the second with an empty value.
  let nextByte = 0
  const messages = Array.from({ length: 60 }, (_, i) => {
    let key = null
    if (i % 10 !== 3) {
      key = Buffer.from(Array.from({ length: 5 }, () => nextByte++ % 256))
    }
    const value = i % 10 === 7 ? null : Buffer.from([i, 0, 255, i ^ 0xff])
    return { partition: i % 3, key, value, headers: { 'compat-h': [Buffer.from(`h-${i}`), Buffer.alloc(0)] } }
  })
  check(nextByte >= 256, 'the keys do not cover all byte values')
  const producer = await ctx.producer()
  const sent = await produceAcked(producer, topic, messages, { acks: -1 })
  const records = await consume(ctx, topic, { enough: atLeast(60) })
  checkRoundTrip(sent, records)
  const nullKeys = records.filter(r => r.key === null).length
  const nullValues = records.filter(r => r.value === null).length
  check(nullKeys === 6 && nullValues === 6, `expected 6 null keys and 6 null values, got ${nullKeys} and ${nullValues}`)
}

scenarios['large-message'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  // kafkajs has no client-side max request size to raise
  const producer = await ctx.producer()
  const value = crypto.randomBytes(900000)
  const sent = await produceAcked(producer, topic, [{ partition: 0, key: Buffer.from('large'), value }], { acks: -1 })
  const records = await consume(ctx, topic, { enough: atLeast(1) })
  checkRoundTrip(sent, records)
}

scenarios['consume-beginning'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  const messages = toPartition0(50)
  await produceAcked(producer, topic, messages, { acks: -1 })
  const records = await consume(ctx, topic, { fromBeginning: true, enough: atLeast(50) })
  checkPartition0(records, 0, messages.map(m => m.value.toString()))
}

scenarios['consume-offset'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  const messages = toPartition0(100)
  await produceAcked(producer, topic, messages, { acks: -1 })
  const records = await consume(ctx, topic, { seeks: [{ partition: 0, offset: '40' }], enough: atLeast(60) })
  checkPartition0(records, 40, messages.slice(40).map(m => m.value.toString()))
}

scenarios['consume-timestamp'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  // both batches in the past (T1 an hour before now), within any timestamp-skew limit
  const t0 = Date.now() - 2 * 3600 * 1000
  const t1 = t0 + 3600 * 1000
  const first = toPartition0(50, 'first').map((m, i) => ({ ...m, timestamp: String(t0 + i) }))
  const second = toPartition0(50, 'second').map((m, i) => ({ ...m, timestamp: String(t1 + i) }))
  const producer = await ctx.producer()
  await produceAcked(producer, topic, first, { acks: -1 })
  await produceAcked(producer, topic, second, { acks: -1 })
  const offsets = await admin.fetchTopicOffsetsByTimestamp(topic, t1)
  const partition0 = offsets.find(o => o.partition === 0)
  check(partition0 && partition0.offset === '50', `fetchTopicOffsetsByTimestamp(T1) gave ${show(offsets)}, expected offset 50 for partition 0`)
  const records = await consume(ctx, topic, { seeks: [{ partition: 0, offset: partition0.offset }], enough: atLeast(50) })
  checkPartition0(records, 50, second.map(m => m.value.toString()))
  records.forEach((record, i) => {
    check(record.timestamp === String(t1 + i), `offset ${record.offset}: timestamp ${record.timestamp}, expected ${t1 + i}`)
  })
}

scenarios['consume-end'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  await produceAcked(producer, topic, toPartition0(20, 'before'), { acks: -1 })
  const after = toPartition0(10, 'after')
  const records = await consume(ctx, topic, {
    fromBeginning: false, // kafkajs's "latest" default offset
    enough: atLeast(10),
    onRunning: async consumer => {
      // positioned once a fetch has completed: kafkajs resolves the default offset before it
      let fetched = false
      const stop = consumer.on(consumer.events.FETCH, () => (fetched = true))
      check(await waitFor(() => fetched, CONSUME_TIMEOUT_MS), 'the consumer made no fetch within 30 s')
      stop()
      await produceAcked(producer, topic, after, { acks: -1 })
    },
  })
  checkPartition0(records, 20, after.map(m => m.value.toString()))
}

scenarios['idempotent'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer({ idempotent: true, maxInFlightRequests: 1 })
  const messages = numbered(300) // partitioned by key; three sends so sequence numbers carry on
  for (let i = 0; i < 300; i += 100) {
    const acknowledged = await producer.send({ topic, messages: messages.slice(i, i + 100), acks: -1 })
    check(acknowledged.every(m => m.errorCode === 0), `idempotent send got ${show(acknowledged)}`)
  }
  const records = await consume(ctx, topic, { enough: atLeast(300) })
  checkValuesInSendOrder(300, records)
}

scenarios['group-rebalance'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  const groupId = ctx.name('-group')
  await createTopic(admin, topic, 4)
  const producer = await ctx.producer()

  const member = label => {
    const consumer = ctx.consumer({ groupId, rebalanceTimeout: 20000 })
    const state = { label, consumer, assignment: [], joins: 0, records: [], misowned: [] }
    consumer.on(consumer.events.GROUP_JOIN, event => {
      state.assignment = (event.payload.memberAssignment[topic] || []).slice().sort()
      state.joins++
    })
    state.start = async () => {
      await consumer.connect()
      await consumer.subscribe({ topic, fromBeginning: true })
      await consumer.run({
        eachMessage: async ({ partition, message }) => {
          if (!state.assignment.includes(partition)) state.misowned.push(partition)
          state.records.push({ partition, value: message.value.toString() })
        },
      })
    }
    return state
  }
  const a = member('A')
  const b = member('B')
  await a.start()
  await b.start()

  const balanced = () =>
    a.assignment.length >= 1 &&
    b.assignment.length >= 1 &&
    a.assignment.every(p => !b.assignment.includes(p)) &&
    new Set([...a.assignment, ...b.assignment]).size === 4
  check(await waitFor(balanced, 30000), `no balanced assignment within 30 s: A=${show(a.assignment)} B=${show(b.assignment)}`)

  const firstBatch = numbered(200, 4)
  await produceAcked(producer, topic, firstBatch, { acks: -1 })
  const total = () => a.records.length + b.records.length
  await waitFor(() => total() >= 200, CONSUME_TIMEOUT_MS)
  await sleep(1000)
  check(a.misowned.length + b.misowned.length === 0, `records consumed by a member not owning their partition: A ${show(a.misowned)}, B ${show(b.misowned)}`)
  const consumed = [...a.records, ...b.records].map(r => r.value)
  check(new Set(consumed).size === consumed.length, `some of the 200 records were consumed twice (${consumed.length} deliveries)`)
  check(consumed.length === 200, `expected 200 records over both members, got ${consumed.length} (A ${a.records.length}, B ${b.records.length}; A owns ${show(a.assignment)}, B owns ${show(b.assignment)})`)
  for (const member of [a, b]) {
    for (const record of member.records) {
      check(member.assignment.includes(record.partition), `${member.label} consumed partition ${record.partition} but owns ${show(member.assignment)}`)
    }
  }

  await b.consumer.disconnect() // leaves the group
  check(await waitFor(() => a.assignment.length === 4, 30000), `after B left, A owns ${show(a.assignment)} (expected all 4) after 30 s`)
  const before = a.records.length
  const secondBatch = numbered(300, 4).slice(200)
  await produceAcked(producer, topic, secondBatch, { acks: -1 })
  await waitFor(() => a.records.length - before >= 100, CONSUME_TIMEOUT_MS)
  await sleep(1000)
  const later = a.records.slice(before).map(r => r.value)
  const expected = secondBatch.map(m => m.value.toString())
  check(a.misowned.length === 0, `A consumed partitions it did not own: ${show(a.misowned)}`)
  check(
    later.length === 100 && expected.every(v => later.includes(v)),
    `after B left, A read ${later.length} records (expected exactly the 100 new ones; first: ${show(later.slice(0, 3))})`
  )
}

scenarios['commit-resume'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  const groupId = ctx.name('-group')
  await createTopic(admin, topic, 1)
  const producer = await ctx.producer()
  const messages = toPartition0(150)
  await produceAcked(producer, topic, messages, { acks: -1 })

  // first consumer: processes offsets 0..99, commits 100 synchronously, closes
  const first = ctx.consumer({ groupId })
  const processed = []
  await first.connect()
  await first.subscribe({ topic, fromBeginning: true })
  await first.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset }) => {
      for (const message of batch.messages) {
        if (Number(message.offset) >= 100) break
        processed.push(Number(message.offset))
        resolveOffset(message.offset)
      }
      if (processed.length >= 100) first.pause([{ topic }])
    },
  })
  check(await waitFor(() => processed.length >= 100, CONSUME_TIMEOUT_MS), `the first consumer processed ${processed.length} of 100 records in 30 s`)
  await first.commitOffsets([{ topic, partition: 0, offset: '100' }])
  await first.disconnect()
  check(processed.every((offset, i) => offset === i) && processed.length === 100, `the first consumer processed offsets ${show(processed.slice(0, 5))}... (${processed.length})`)

  // second consumer of the same group: resumes at the committed offset
  const second = ctx.consumer({ groupId })
  const records = []
  await second.connect()
  await second.subscribe({ topic, fromBeginning: true })
  await second.run({
    eachMessage: async ({ partition, message }) => {
      records.push({ partition, offset: BigInt(message.offset), value: message.value })
    },
  })
  await waitFor(() => records.length >= 50, CONSUME_TIMEOUT_MS)
  await sleep(1000)
  await second.disconnect()
  checkPartition0(records, 100, messages.slice(100).map(m => m.value.toString()))
}

scenarios['admin-topics'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  check((await admin.listTopics()).includes(topic), `listTopics does not list ${topic} after creation`)
  await admin.createPartitions({ topicPartitions: [{ topic, count: 5 }] })
  const partitions = async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] })
    return topics[0].partitions.length
  }
  let count = await partitions()
  for (let i = 0; i < 20 && count !== 5; i++) {
    await sleep(250) // metadata may lag the new partitions briefly
    count = await partitions()
  }
  check(count === 5, `after createPartitions(5), fetchTopicMetadata shows ${count} partitions`)
  await admin.deleteTopics({ topics: [topic] })
  const deadline = Date.now() + 10000
  let listed = true
  while (listed && Date.now() < deadline) {
    listed = (await admin.listTopics()).includes(topic)
    if (listed) await sleep(250)
  }
  check(!listed, `${topic} is still listed 10 s after deleteTopics`)
}

scenarios['admin-configs'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3, [{ name: 'retention.ms', value: '3600000' }])
  const retention = async () => {
    const { resources } = await admin.describeConfigs({
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configNames: ['retention.ms'] }],
      includeSynonyms: false,
    })
    check(resources.length === 1 && resources[0].errorCode === 0, `describeConfigs answered ${show(resources)}`)
    const entry = resources[0].configEntries.find(e => e.configName === 'retention.ms')
    return entry ? entry.configValue : undefined
  }
  const initial = await retention()
  check(initial === '3600000', `describeConfigs shows retention.ms=${show(initial)}, expected 3600000`)
  // kafkajs has no IncrementalAlterConfigs: alterConfigs is the (whole-set) AlterConfigs API
  await admin
    .alterConfigs({
      validateOnly: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic, configEntries: [{ name: 'retention.ms', value: '7200000' }] }],
    })
    .catch(e => fail(`alterConfigs failed: ${describeError(e)}`))
  let altered = await retention()
  for (let i = 0; i < 20 && altered !== '7200000'; i++) {
    await sleep(250)
    altered = await retention()
  }
  check(altered === '7200000', `after alterConfigs, describeConfigs shows retention.ms=${show(altered)}, expected 7200000`)
}

scenarios['delete-records'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  const messages = toPartition0(100)
  await produceAcked(producer, topic, messages, { acks: -1 })
  await admin.fetchTopicOffsets(topic) // loads the topic's metadata, which deleteTopicRecords needs
  await admin.deleteTopicRecords({ topic, partitions: [{ partition: 0, offset: '30' }] })
  const offsets = await admin.fetchTopicOffsets(topic)
  const partition0 = offsets.find(o => o.partition === 0)
  check(partition0 && partition0.low === '30', `after deleting before 30, partition 0's earliest offset is ${show(partition0 && partition0.low)} (expected 30)`)
  const records = await consume(ctx, topic, { fromBeginning: true, enough: atLeast(70) })
  checkPartition0(records, 30, messages.slice(30).map(m => m.value.toString()))
}

scenarios['error-unknown-topic'] = async ctx => {
  const admin = await ctx.admin() // kafkajs's admin never asks for auto-creation
  const topic = ctx.name('-missing')
  let outcome
  try {
    outcome = await admin.fetchTopicMetadata({ topics: [topic] })
  } catch (e) {
    const types = errorTypes(e)
    check(types.includes('UNKNOWN_TOPIC_OR_PARTITION'), `expected UNKNOWN_TOPIC_OR_PARTITION, got ${describeError(e)}`)
    const listed = await admin.listTopics()
    check(!listed.includes(topic), `describing ${topic} created it`)
    return
  }
  fail(`fetchTopicMetadata of a missing topic succeeded: ${show(outcome)}`)
}

scenarios['error-invalid-topic'] = async ctx => {
  const admin = await ctx.admin()
  try {
    await admin.createTopics({ topics: [{ topic: 'bad/name', numPartitions: 3, replicationFactor: 1 }] })
  } catch (e) {
    const types = errorTypes(e)
    check(types.includes('INVALID_TOPIC_EXCEPTION'), `expected INVALID_TOPIC_EXCEPTION, got ${describeError(e)}`)
    return
  }
  fail('createTopics(bad/name) succeeded')
}

scenarios['error-too-large'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  // kafkajs has no client-side max request size: the broker alone judges the size
  const producer = await ctx.producer({ retry: { retries: 0 } })
  try {
    const acknowledged = await producer.send({
      topic,
      acks: -1,
      messages: [{ partition: 0, value: crypto.randomBytes(2000000) }],
    })
    fail(`the 2,000,000-byte record was accepted: ${show(acknowledged)}`)
  } catch (e) {
    if (e instanceof Failure) throw e
    const types = errorTypes(e)
    check(types.includes('MESSAGE_TOO_LARGE'), `expected MESSAGE_TOO_LARGE, got ${describeError(e)}`)
  }
  const offsets = await admin.fetchTopicOffsets(topic)
  const stored = offsets.filter(o => o.high !== o.low)
  check(stored.length === 0, `the topic is not empty after the rejected record: ${show(offsets)}`)
}

scenarios['error-out-of-range'] = async ctx => {
  const admin = await ctx.admin()
  const topic = ctx.name()
  await createTopic(admin, topic, 3)
  const producer = await ctx.producer()
  await produceAcked(producer, topic, toPartition0(10), { acks: -1 })
  // kafkajs has no "none" reset policy: on OFFSET_OUT_OF_RANGE its consumer reports the
  // error through its logger (KafkaJSOffsetOutOfRange, level ERROR) and resets to its default
  // offset. That report is the client's error here; no record may come from offset 1000.
  const reported = () =>
    ctx.logs.some(
      ({ label, log }) =>
        label === 'ERROR' && /offset out of range/i.test(log.message) && log.topic === topic && log.partition === 0
    )
  const records = await consume(ctx, topic, {
    fromBeginning: false, // reset target after the error: the end, so nothing is read
    seeks: [{ partition: 0, offset: '1000' }],
    enough: reported,
    settleMs: 500,
  })
  check(reported(), `no OFFSET_OUT_OF_RANGE was reported for partition 0 at offset 1000 within 30 s (read ${records.length} records)`)
  check(records.length === 0, `read ${records.length} records after seeking past the end (first offset ${records[0] && records[0].offset})`)
}

// transactions: kafkajs's transactional producer (producer.transaction(): send, sendOffsets,
// commit, abort). kafkajs has no manual assignment and its sendOffsets takes only the group
// id (TxnOffsetCommit without member or generation), so the input is read by a consumer of
// a group of its own and the offsets go to group G, which nobody joins. kafkajs 2.2.4 does not
// know error code 90 (PRODUCER_FENCED, Kafka 2.7+): it reports it as 'Unknown error code 90'.
const FENCED_TYPES = ['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH']
const isFenced = e =>
  errorTypes(e).some(type => FENCED_TYPES.includes(type)) || /Unknown error code 90\b/.test(describeError(e))

scenarios.transactions = async ctx => {
  const admin = await ctx.admin()
  const output = ctx.name('-out')
  const input = ctx.name('-in')
  const groupId = ctx.name('-txn-group')
  const transactionalId = ctx.name('-txn')
  await createTopic(admin, output, 1)
  await createTopic(admin, input, 1)
  const values = (prefix, count) =>
    Array.from({ length: count }, (_, i) => ({ partition: 0, key: Buffer.from(`${prefix}-${i}`), value: Buffer.from(`${prefix}-${i}`) }))
  const inputs = values('in', 3)
  const t1 = values('t1', 10)
  const t2 = values('t2', 5)
  const t3 = values('t3', 3)
  const plain = await ctx.producer()
  await produceAcked(plain, input, inputs, { acks: -1 })

  const txnOptions = { transactionalId, idempotent: true, maxInFlightRequests: 1, transactionTimeout: 30000 }
  const first = await ctx.producer(txnOptions)
  let txn = await first.transaction()
  await txn.send({ topic: output, messages: t1, acks: -1 })
  await txn.commit()
  txn = await first.transaction()
  await txn.send({ topic: output, messages: t2, acks: -1 })
  await txn.abort()

  // Transaction 3: read the input, send its transform and the input's offsets for the group.
  const read = await consume(ctx, input, { enough: atLeast(inputs.length), settleMs: 300 })
  const readValues = read.map(r => r.value.toString())
  check(show(readValues) === show(inputs.map(m => m.value.toString())), `the input consumer read ${show(readValues)}, expected in-0..in-2`)
  txn = await first.transaction()
  await txn.send({ topic: output, messages: t3, acks: -1 })
  await txn.sendOffsets({ consumerGroupId: groupId, topics: [{ topic: input, partitions: [{ partition: 0, offset: String(inputs.length) }] }] })
  await txn.commit()
  // The offsets count once the commit marker reached the group's partition, which EndTxn
  // does not wait for: OffsetFetch is retried for a while.
  let offset
  const deadline = Date.now() + 10000
  do {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [input] })
    offset = committed && committed.partitions.find(p => p.partition === 0)
    if (offset && offset.offset === String(inputs.length)) break
    await sleep(200)
  } while (Date.now() < deadline)
  check(offset && offset.offset === String(inputs.length), `group ${groupId} committed offset of the input is ${show(offset)}, expected 3`)

  // A second producer with the same transactional id fences the first: its first
  // transaction() initialises it (InitProducerId); that transaction is empty and aborted.
  const second = await ctx.producer(txnOptions)
  await (await second.transaction()).abort()
  await second.disconnect()
  let fenced
  try {
    txn = await first.transaction()
    await txn.send({ topic: output, messages: [{ partition: 0, key: Buffer.from('fenced'), value: Buffer.from('fenced') }], acks: -1 })
    await txn.commit()
  } catch (e) {
    fenced = e
  }
  check(fenced, 'the fenced producer committed a transaction after a second producer with its transactional id initialised')
  check(isFenced(fenced), `the fenced producer failed with ${describeError(fenced)}, expected PRODUCER_FENCED or INVALID_PRODUCER_EPOCH`)
  process.stderr.write(`[kafkajs] transactions: first producer fenced: ${describeError(fenced)}\n`)

  const views = [
    ['read_committed', { readUncommitted: false }, [...t1, ...t3]],
    ['read_uncommitted', { readUncommitted: true }, [...t1, ...t2, ...t3]],
  ]
  for (const [name, options, want] of views) {
    const got = await consume(ctx, output, { enough: atLeast(want.length), options })
    const gotValues = got.map(r => r.value.toString())
    const wantValues = want.map(m => m.value.toString())
    check(show(gotValues) === show(wantValues), `${name} read ${gotValues.length} records ${show(gotValues)}, expected ${show(wantValues)}`)
  }
}

// ---------------------------------------------------------------------------------------

async function main() {
  const args = process.argv.slice(2)
  if (args[0] === '--list') {
    process.stdout.write(Object.keys(scenarios).join('\n') + '\n')
    return 0
  }
  if (args.length !== 2) {
    process.stderr.write('usage: node scenarios.js --list | BOOTSTRAP SCENARIO\n')
    return 2
  }
  const [bootstrap, scenario] = args
  if (!scenarios[scenario]) {
    process.stdout.write(`FAIL ${scenario}: unknown scenario\n`)
    return 0
  }
  const ctx = new Context(bootstrap, scenario)
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Failure(`did not finish within ${SCENARIO_TIMEOUT_MS / 1000} s`)), SCENARIO_TIMEOUT_MS)
  })
  let line
  try {
    await Promise.race([scenarios[scenario](ctx), timeout])
    line = `PASS ${scenario}`
  } catch (e) {
    if (e instanceof NotApplicable) line = `N/A ${scenario}: ${oneLine(e.message)}`
    else if (e instanceof Failure) line = `FAIL ${scenario}: ${oneLine(e.message)}`
    else {
      process.stderr.write(`${e.stack}\n`)
      line = `FAIL ${scenario}: ${describeError(e)}`
    }
  } finally {
    clearTimeout(timer)
  }
  await ctx.close()
  process.stdout.write(line + '\n')
  return 0
}

main().then(
  code => process.exit(code),
  e => {
    process.stderr.write(`${e.stack}\n`)
    process.exit(1)
  }
)
