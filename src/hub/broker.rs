//! The seam between this node's hub and other Chex nodes.
//!
//! A deployment with several Chex instances behind a load balancer needs an event committed on one
//! node to reach sockets on every node. A `Broker` carries it there (NATS or Redis would implement
//! it); the receiving node calls [`super::Hub::deliver`]. Only the in-process broker exists now.

use std::sync::Arc;

use crate::domain::StatusEvent;

/// Carries events committed on this node to the other nodes.
pub trait Broker: Send + Sync + 'static {
    /// Called once per committed event, after local delivery. Must not block.
    fn publish(&self, event: &Arc<StatusEvent>);
}

/// A single node: there is nobody else to tell.
pub struct LocalBroker;

impl Broker for LocalBroker {
    fn publish(&self, _event: &Arc<StatusEvent>) {}
}
