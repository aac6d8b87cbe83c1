//! Cluster coordination for LMQ: the `Coordinator` trait (membership, leader election with
//! fencing tokens, metadata with compare-and-set, locks and watches) and its embedded and
//! Consul implementations.
//!
//! It is empty until the cluster-coordination issue fills it.
