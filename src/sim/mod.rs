//! Simulators of the tools Chex reads, faithful to their wire contracts, for the demo, the tests
//! and the benchmarks. No internet reaches the machines Chex is built on; the same client code
//! runs against these and against the real services.

pub mod slack;
