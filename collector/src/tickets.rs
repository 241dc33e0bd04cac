//! Stream tickets: short-lived, single-use random credentials that let a browser open the admin WebSocket without putting the admin token in a URL.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a ticket may wait before it is used.
pub const TICKET_TTL: Duration = Duration::from_secs(30);
/// Most tickets waiting at once; the oldest goes when another is issued.
const MAX_WAITING: usize = 1024;

/// The tickets this process issued and that are not used yet. (In one process: with several
/// collectors behind a load balancer, the WebSocket must reach the process that issued its ticket.)
#[derive(Default)]
pub struct Tickets {
    waiting: Mutex<HashMap<String, Instant>>,
}

impl Tickets {
    /// A new ticket: 32 random bytes from the operating system, hex, valid for [`TICKET_TTL`].
    pub fn issue(&self) -> String {
        self.issue_at(Instant::now())
    }

    fn issue_at(&self, now: Instant) -> String {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        let ticket: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut waiting = self.waiting.lock().expect("tickets lock");
        waiting.retain(|_, issued| now.duration_since(*issued) < TICKET_TTL);
        if waiting.len() >= MAX_WAITING {
            if let Some(oldest) = waiting
                .iter()
                .min_by_key(|(_, issued)| **issued)
                .map(|(t, _)| t.clone())
            {
                waiting.remove(&oldest);
            }
        }
        waiting.insert(ticket.clone(), now);
        ticket
    }

    /// Whether `ticket` was issued here less than [`TICKET_TTL`] ago and not used; it is used now.
    pub fn redeem(&self, ticket: &str) -> bool {
        self.redeem_at(ticket, Instant::now())
    }

    fn redeem_at(&self, ticket: &str, now: Instant) -> bool {
        let issued = self.waiting.lock().expect("tickets lock").remove(ticket);
        issued.is_some_and(|issued| now.duration_since(issued) < TICKET_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_is_random_single_use_and_expires() {
        let tickets = Tickets::default();
        let start = Instant::now();
        let first = tickets.issue_at(start);
        let second = tickets.issue_at(start);
        assert_eq!(first.len(), 64);
        assert_ne!(first, second);
        assert!(tickets.redeem_at(&first, start + Duration::from_secs(1)));
        assert!(!tickets.redeem_at(&first, start + Duration::from_secs(1)), "used twice");
        assert!(!tickets.redeem_at(&second, start + TICKET_TTL), "expired");
        assert!(!tickets.redeem_at("", start));
    }

    #[test]
    fn waiting_tickets_are_bounded() {
        let tickets = Tickets::default();
        let start = Instant::now();
        let oldest = tickets.issue_at(start);
        for i in 0..MAX_WAITING {
            tickets.issue_at(start + Duration::from_millis(1 + i as u64 / 100));
        }
        assert_eq!(tickets.waiting.lock().unwrap().len(), MAX_WAITING);
        assert!(!tickets.redeem_at(&oldest, start + Duration::from_secs(1)));
    }
}
