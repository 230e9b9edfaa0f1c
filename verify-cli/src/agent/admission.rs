//! Who gets a connection served. Each peer (by the uid its socket credentials give) may hold a
//! bounded number of connections open, and a connection holds nothing but its slot until its
//! request line arrives, within a deadline: a job that floods the socket with idle connections
//! cannot use up the agent's threads, file descriptors or another user's turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The per-peer cap and the request-line deadline (agent config `max_connections_per_peer`,
/// `request_timeout`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_per_peer: usize,
    pub request_timeout: Duration,
}

/// Connections open per uid.
pub struct PeerConnections {
    max_per_peer: usize,
    open: Mutex<HashMap<u32, usize>>,
}

/// One admitted connection; its slot is given back when it is dropped.
pub struct ConnectionSlot {
    peers: Arc<PeerConnections>,
    uid: u32,
}

impl PeerConnections {
    pub fn new(max_per_peer: usize) -> Arc<Self> {
        Arc::new(Self {
            max_per_peer,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a connection of `uid`, or `None` when it holds the most it may already.
    pub fn admit(self: &Arc<Self>, uid: u32) -> Option<ConnectionSlot> {
        let mut open = self.open.lock().expect("connections lock");
        let count = open.entry(uid).or_default();
        if *count >= self.max_per_peer {
            return None;
        }
        *count += 1;
        Some(ConnectionSlot {
            peers: Arc::clone(self),
            uid,
        })
    }

    /// Connections open, all peers together.
    pub fn open(&self) -> usize {
        self.open.lock().expect("connections lock").values().sum()
    }

    pub fn max_per_peer(&self) -> usize {
        self.max_per_peer
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut open = self.peers.open.lock().expect("connections lock");
        if let Some(count) = open.get_mut(&self.uid) {
            *count -= 1;
            if *count == 0 {
                // No entry per uid that ever connected: the map stays as small as what is open.
                open.remove(&self.uid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_peer_has_its_own_cap() {
        let peers = PeerConnections::new(2);
        let a1 = peers.admit(1000).unwrap();
        let _a2 = peers.admit(1000).unwrap();
        assert!(
            peers.admit(1000).is_none(),
            "a third connection of uid 1000"
        );
        let _b = peers.admit(1001).expect("another uid is not held back");
        assert_eq!(peers.open(), 3);
        drop(a1);
        assert!(
            peers.admit(1000).is_some(),
            "a slot given back is free again"
        );
    }

    #[test]
    fn slots_given_back_leave_no_entries() {
        let peers = PeerConnections::new(1);
        for uid in 0..100 {
            drop(peers.admit(uid).unwrap());
        }
        assert_eq!(peers.open(), 0);
        assert!(peers.open.lock().unwrap().is_empty());
    }
}
