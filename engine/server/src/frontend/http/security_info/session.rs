//! Sessions of the security-info pages: in this node's memory, short, and bound to one
//! user. A session is opened only by spending a ticket (which the store spends once,
//! whichever node it reaches); a browser keeps only the session's random id, in a cookie
//! that is `Secure`, `HttpOnly` and `SameSite=Strict`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use portvakt_core::ChallengeId;

use super::text::Lang;

/// The most sessions one node holds; past it, the oldest-seen is ended.
pub(crate) const MAX_SESSIONS: usize = 100_000;

/// An enrolment begun and not yet proved, or a code sent for the second factor.
#[derive(Clone, Debug)]
pub(crate) enum Pending {
    /// An authenticator app: show its QR code and secret, then take its first code.
    App {
        method: u32,
        secret: String,
        uri: String,
    },
    /// A phone or email address: a code was sent to it.
    Sent {
        method: u32,
        challenge: [u8; 16],
        destination: String,
    },
    /// A security key: the options for the browser.
    Key { options: String },
    /// A push device: the URI to pair with.
    Push { method: u32, uri: String },
}

/// What the second factor asked the default method for.
#[derive(Clone, Debug)]
pub(crate) enum Asked {
    /// An approval, waiting on the app: choose `number` there.
    Push { approval: ChallengeId, number: u8 },
    /// A security key: the options for `navigator.credentials.get()`.
    Key { options: String },
}

/// One person's visit.
pub(crate) struct Session {
    pub(crate) tenant: String,
    pub(crate) user: String,
    opened: Instant,
    seen: Instant,
    /// A second factor was shown in this session, or the user had no method to show
    /// one with when it was opened.
    pub(crate) verified: bool,
    /// Every form's hidden `csrf` field must carry this.
    pub(crate) csrf: String,
    pub(crate) lang: Lang,
    pub(crate) pending: Option<Pending>,
    /// The code sent for the second factor, and where to.
    pub(crate) verify_sent: Option<(ChallengeId, String)>,
    /// The second factor asked of the default method: an approval sent to the app (its
    /// id and number), or a security key's options for the browser.
    pub(crate) verify_asked: Option<Asked>,
    /// A line for the next page (what was done, or what went wrong).
    pub(crate) notice: Option<super::Line>,
    pub(crate) problem: Option<super::Line>,
}

impl Session {
    pub(crate) fn new(
        tenant: String,
        user: String,
        verified: bool,
        lang: Lang,
        now: Instant,
    ) -> Self {
        Self {
            tenant,
            user,
            opened: now,
            seen: now,
            verified,
            csrf: random_token(),
            lang,
            pending: None,
            verify_sent: None,
            verify_asked: None,
            notice: None,
            problem: None,
        }
    }
}

/// This node's sessions, by id.
pub(crate) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: Duration,
}

impl Sessions {
    pub(crate) fn new(idle: Duration, max: Duration) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            idle,
            max,
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.opened) < self.max
    }

    /// Keeps `session` under a new random id, and returns the id.
    pub(crate) fn open(&self, session: Session, now: Instant) -> String {
        let id = random_token();
        let mut map = self.map.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| now.duration_since(s.seen) < self.idle);
            if map.len() >= MAX_SESSIONS {
                let oldest = map
                    .iter()
                    .min_by_key(|(_, s)| s.seen)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    map.remove(&k);
                }
            }
        }
        map.insert(id.clone(), session);
        id
    }

    /// Runs `f` on session `id` if it is live (it is seen now); ends it if it is not.
    pub(crate) fn with<R>(
        &self,
        id: &str,
        now: Instant,
        f: impl FnOnce(&mut Session) -> R,
    ) -> Option<R> {
        let mut map = self.map.lock();
        let live = self.live(map.get(id)?, now);
        if !live {
            map.remove(id);
            return None;
        }
        let s = map.get_mut(id)?;
        s.seen = now;
        Some(f(s))
    }

    /// Ends session `id`.
    pub(crate) fn end(&self, id: &str) {
        self.map.lock().remove(id);
    }

    /// How long a session may last at most (the cookie's lifetime).
    pub(crate) fn max(&self) -> Duration {
        self.max
    }
}

/// 32 random bytes, base64url.
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    portvakt_core::secret::Entropy::fill(&crate::entropy::OsEntropy, &mut b);
    data_encoding::BASE64URL_NOPAD.encode(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: Instant) -> Session {
        Session::new("kommune".into(), "kari".into(), true, Lang::En, now)
    }

    #[test]
    fn a_session_ends_when_idle_or_old() {
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(150));
        let t0 = crate::clock::instant();
        let id = sessions.open(session(t0), t0);
        assert!(
            sessions
                .with(&id, t0 + Duration::from_secs(59), |_| ())
                .is_some()
        );
        assert!(
            sessions
                .with(&id, t0 + Duration::from_secs(118), |_| ())
                .is_some()
        );
        // Seen within the idle time each time, but past the longest a session lasts.
        assert!(
            sessions
                .with(&id, t0 + Duration::from_secs(150), |_| ())
                .is_none()
        );
        let id = sessions.open(session(t0), t0);
        assert!(
            sessions
                .with(&id, t0 + Duration::from_secs(60), |_| ())
                .is_none()
        );
        // Ended for good, not only refused that once.
        assert!(sessions.with(&id, t0, |_| ()).is_none());
    }

    #[test]
    fn ids_and_csrf_tokens_are_fresh_and_long() {
        let t0 = crate::clock::instant();
        let sessions = Sessions::new(Duration::from_secs(60), Duration::from_secs(60));
        let (a, b) = (
            sessions.open(session(t0), t0),
            sessions.open(session(t0), t0),
        );
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        let (x, y) = (
            sessions.with(&a, t0, |s| s.csrf.clone()).unwrap(),
            sessions.with(&b, t0, |s| s.csrf.clone()).unwrap(),
        );
        assert_ne!(x, y);
        sessions.end(&a);
        assert!(sessions.with(&a, t0, |_| ()).is_none());
    }
}
