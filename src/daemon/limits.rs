//! Connection limits of the socket endpoints: who may connect (a global and a per-peer cap, with
//! eviction of connections that never proved themselves), and the token bucket used both per
//! connection and for all socket clients together. Serial inputs are never counted here: a
//! serial sensor cannot be crowded out by socket clients.
//!
//! Invariant: the registry holds one entry per admitted, not yet finished connection; an evicted
//! entry is removed at once and its connection told to close through its `kick`.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;
use tokio::time::Instant;

pub use crate::config::ConnectionLimits;

/// The other end of a socket, for the per-peer limit: an IP address, or a local user.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Peer {
    Ip(IpAddr),
    Uid(u32),
    Unknown,
}

#[derive(Debug)]
struct Entry {
    peer: Peer,
    /// Has sent at least one valid frame (never evicted for a newcomer).
    proven: bool,
    kick: Arc<Notify>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// By id, so oldest first.
    entries: BTreeMap<u64, Entry>,
}

/// Outcome of `Registry::admit`.
#[derive(Debug)]
pub enum Admission {
    /// Admitted; `evicted` is true when an unproven connection was closed to make room.
    Admitted {
        ticket: Ticket,
        evicted: bool,
    },
    Refused {
        reason: &'static str,
    },
}

/// Admitted socket connections.
#[derive(Debug)]
pub struct Registry {
    limits: ConnectionLimits,
    state: Mutex<State>,
}

/// A connection's place in the registry; leaving is dropping it.
#[derive(Debug)]
pub struct Ticket {
    id: u64,
    pub kick: Arc<Notify>,
    registry: Arc<Registry>,
}

impl Ticket {
    /// The connection sent a valid frame: it is no longer evicted for newcomers.
    pub fn prove(&self) {
        if let Some(e) = self.registry.lock().entries.get_mut(&self.id) {
            e.proven = true;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.registry.lock().entries.remove(&self.id);
    }
}

impl Registry {
    pub fn new(limits: ConnectionLimits) -> Arc<Self> {
        Arc::new(Registry {
            limits,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The map stays consistent whatever panicked while holding the lock.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Admits a connection from `peer`. At the per-peer or the global cap, the oldest unproven
    /// connection (of that peer, resp. of anyone) is evicted; with none, the newcomer is refused.
    pub fn admit(self: &Arc<Self>, peer: Peer) -> Admission {
        let mut st = self.lock();
        let mut evicted = false;
        let of_peer = st.entries.values().filter(|e| e.peer == peer).count();
        if of_peer >= self.limits.max_connections_per_peer.max(1) {
            if !evict_oldest_unproven(&mut st, |e| e.peer == peer) {
                return Admission::Refused {
                    reason: "per-peer connection limit",
                };
            }
            evicted = true;
        }
        if st.entries.len() >= self.limits.max_connections.max(1) {
            if !evict_oldest_unproven(&mut st, |_| true) {
                return Admission::Refused {
                    reason: "connection limit",
                };
            }
            evicted = true;
        }
        let id = st.next_id;
        st.next_id += 1;
        let kick = Arc::new(Notify::new());
        st.entries.insert(
            id,
            Entry {
                peer,
                proven: false,
                kick: Arc::clone(&kick),
            },
        );
        Admission::Admitted {
            ticket: Ticket {
                id,
                kick,
                registry: Arc::clone(self),
            },
            evicted,
        }
    }
}

fn evict_oldest_unproven(st: &mut State, pick: impl Fn(&Entry) -> bool) -> bool {
    let Some(id) = st.entries.iter().find(|(_, e)| !e.proven && pick(e)).map(|(&id, _)| id) else {
        return false;
    };
    if let Some(e) = st.entries.remove(&id) {
        // notify_one keeps a permit, so a connection not yet waiting still sees it.
        e.kick.notify_one();
    }
    true
}

/// Token bucket: `rate` frames per second, at most `burst` at once.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: u32, burst: u32, now: Instant) -> Self {
        TokenBucket {
            rate: f64::from(rate),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(global: usize, per_peer: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: global,
            max_connections_per_peer: per_peer,
            ..ConnectionLimits::default()
        }
    }

    fn ticket(a: Admission) -> (Ticket, bool) {
        match a {
            Admission::Admitted { ticket, evicted } => (ticket, evicted),
            Admission::Refused { reason } => panic!("refused: {reason}"),
        }
    }

    #[test]
    fn newcomer_evicts_oldest_unproven_then_is_refused_when_all_proven() {
        let r = Registry::new(limits(2, 10));
        let (a, _) = ticket(r.admit(Peer::Uid(1)));
        let (b, _) = ticket(r.admit(Peer::Uid(1)));
        b.prove();
        let (c, evicted) = ticket(r.admit(Peer::Uid(2)));
        assert!(evicted);
        assert_eq!(r.len(), 2);
        // `a` was told to close; dropping it later is harmless.
        drop(a);
        assert_eq!(r.len(), 2);
        c.prove();
        assert!(matches!(r.admit(Peer::Uid(3)), Admission::Refused { .. }));
        drop(b);
        let _ = ticket(r.admit(Peer::Uid(3)));
    }

    #[test]
    fn per_peer_limit_only_evicts_that_peer() {
        let r = Registry::new(limits(10, 1));
        let (x, _) = ticket(r.admit(Peer::Uid(1)));
        let (_y, evicted) = ticket(r.admit(Peer::Uid(2)));
        assert!(!evicted);
        let (_x2, evicted) = ticket(r.admit(Peer::Uid(1)));
        assert!(evicted, "x was unproven");
        drop(x);
        assert_eq!(r.len(), 2);
    }
}
