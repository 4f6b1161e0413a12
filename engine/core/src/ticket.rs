//! Tickets: single-use passes to a user's own security-info pages.
//!
//! Portvakt checks no passwords. A frontend that has just checked one (for example when
//! the decision answered `register`) asks for a ticket for that user and sends the
//! person's browser to the pages with it. The ticket is 16 bytes of id and 16 of secret;
//! the store keeps, under the id, a challenge record ([`ChallengeKind::Ticket`]) holding a
//! keyed digest of the secret, the tenant and the user's name, so a ticket redeems only
//! for the name it was issued for. Redeeming spends it atomically in the store, on
//! whichever node of a shared store the browser reaches: a ticket opens one session,
//! once, and a wrong secret spends it too.

use crate::engine::Engine;
use crate::id::{ChallengeId, MethodId, Subject};
use crate::policy::Purpose;
use crate::secret::SecretDigest;
use crate::state::{ChallengeKind, ChallengeRecord, StateOps as _, StateStore, StoreError};
use crate::time::{Duration, Timestamp};

/// The longest a ticket may live.
pub const MAX_TTL: Duration = Duration::from_secs(15 * 60);

/// A ticket as issued: hand `id` and `secret` to the person's browser, once.
#[derive(Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its id.
    pub id: ChallengeId,
    /// Its secret.
    pub secret: [u8; 16],
    /// When it stops opening anything.
    pub expires: Timestamp,
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticket")
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl<S: StateStore> Engine<S> {
    /// A ticket to `tenant`'s `user`'s security-info pages, valid for `ttl` (at most
    /// [`MAX_TTL`]). The user need not exist yet: a first registration makes it.
    pub fn issue_ticket(
        &self,
        tenant: &str,
        user: &str,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Ticket, StoreError> {
        let mut id = [0u8; 16];
        self.entropy.fill(&mut id);
        let id = ChallengeId(id);
        let mut secret = [0u8; 16];
        self.entropy.fill(&mut secret);
        let expires = now + ttl.min(MAX_TTL);
        let record = ChallengeRecord {
            subject: self.ticket_subject(tenant, user),
            method: MethodId(0),
            purpose: Purpose::SignIn,
            digest: self.ticket_digest(&id, &secret, tenant, user),
            expires,
            attempts_left: 1,
            kind: ChallengeKind::Ticket,
        };
        self.store.put_challenge(id, record, now)?;
        Ok(Ticket {
            id,
            secret,
            expires,
        })
    }

    /// Spends the ticket `id` with `secret` for `tenant`'s `user`: true if it was theirs,
    /// unspent and unexpired. Either way it is spent afterwards.
    pub fn redeem_ticket(
        &self,
        tenant: &str,
        user: &str,
        id: ChallengeId,
        secret: &[u8; 16],
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let subject = self.ticket_subject(tenant, user);
        let digest = self.ticket_digest(&id, secret, tenant, user);
        self.store.update_challenge(id, now, |slot| {
            let Some(c) = slot.take() else {
                return false;
            };
            c.kind == ChallengeKind::Ticket
                && c.subject == subject
                && now < c.expires
                && c.digest.ct_eq(&digest)
        })
    }

    /// Whose ticket it is: the user, or the name's keyed hash for a name not (yet) in the
    /// directory.
    fn ticket_subject(&self, tenant: &str, user: &str) -> Subject {
        match self.directory.get(tenant, user) {
            Some(u) => Subject::Known(u.id),
            None => Subject::Unknown(self.unknown_hash(tenant, user)),
        }
    }

    fn ticket_digest(
        &self,
        id: &ChallengeId,
        secret: &[u8; 16],
        tenant: &str,
        user: &str,
    ) -> SecretDigest {
        let mut v = Vec::with_capacity(16 + 4 + tenant.len() + user.len());
        v.extend_from_slice(secret);
        for part in [tenant, user] {
            v.extend_from_slice(&u16::try_from(part.len()).unwrap_or(u16::MAX).to_be_bytes());
            v.extend_from_slice(part.as_bytes());
        }
        self.pepper
            .digest(&[b"ticket".as_slice(), &id.0].concat(), &v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Pepper;
    use crate::state::MemoryStore;
    use crate::testing::SeededEntropy;

    const NOW: Timestamp = Timestamp::from_secs(1_700_000_000);
    const TTL: Duration = Duration::from_secs(300);

    fn engine(pepper: u8) -> Engine {
        let policy = crate::config::load(include_str!("../../../examples/kommune.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        Engine::new(
            policy,
            MemoryStore::default(),
            Pepper::new([pepper; 32]),
            Box::new(SeededEntropy::new(u64::from(pepper))),
        )
    }

    #[test]
    fn a_ticket_opens_once() {
        let e = engine(1);
        e.add_user("kommune", "kari", &[], false).unwrap();
        let t = e.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        assert_eq!(t.expires, NOW + TTL);
        assert!(
            e.redeem_ticket("kommune", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );
        assert!(
            !e.redeem_ticket("kommune", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );
    }

    #[test]
    fn a_ticket_is_for_its_name_and_a_wrong_try_spends_it() {
        let e = engine(1);
        e.add_user("kommune", "kari", &[], false).unwrap();
        e.add_user("kommune", "ola", &[], false).unwrap();
        let t = e.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        assert!(
            !e.redeem_ticket("kommune", "ola", t.id, &t.secret, NOW)
                .unwrap()
        );
        assert!(
            !e.redeem_ticket("kommune", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );

        let t = e.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        let mut wrong = t.secret;
        wrong[0] ^= 1;
        assert!(
            !e.redeem_ticket("kommune", "kari", t.id, &wrong, NOW)
                .unwrap()
        );
        assert!(
            !e.redeem_ticket("kommune", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );

        // Another tenant's same name.
        let t = e.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        assert!(
            !e.redeem_ticket("other", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );
    }

    #[test]
    fn a_ticket_expires_and_lives_at_most_fifteen_minutes() {
        let e = engine(1);
        let t = e.issue_ticket("kommune", "new", TTL, NOW).unwrap();
        assert!(
            !e.redeem_ticket("kommune", "new", t.id, &t.secret, NOW + TTL)
                .unwrap()
        );
        let t = e
            .issue_ticket("kommune", "new", Duration::from_secs(86_400), NOW)
            .unwrap();
        assert_eq!(t.expires, NOW + MAX_TTL);
        // An unknown name's ticket still opens for that name.
        assert!(
            e.redeem_ticket("kommune", "new", t.id, &t.secret, NOW)
                .unwrap()
        );
    }

    #[test]
    fn another_deployment_cannot_redeem_a_ticket() {
        // Same store contents, another pepper: the digest does not match.
        let (a, b) = (engine(1), engine(2));
        let t = a.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        let mut record = Vec::new();
        a.store
            .update_challenge(t.id, NOW, |slot| {
                slot.as_ref().map(|c| c.encode(&mut record))
            })
            .unwrap();
        let decoded = ChallengeRecord::decode(&record).unwrap();
        assert_eq!(decoded.kind, ChallengeKind::Ticket);
        b.store.put_challenge(t.id, decoded, NOW).unwrap();
        assert!(
            !b.redeem_ticket("kommune", "kari", t.id, &t.secret, NOW)
                .unwrap()
        );
    }

    #[test]
    fn a_ticket_is_not_a_sent_code() {
        let e = engine(1);
        e.add_user("kommune", "kari", &[], false).unwrap();
        let t = e.issue_ticket("kommune", "kari", TTL, NOW).unwrap();
        let subject = e.subject_of("kommune", "kari").unwrap();
        let digest = e.ticket_digest(&t.id, &t.secret, "kommune", "kari");
        let r = e
            .store
            .update_challenge(t.id, NOW, |slot| {
                ChallengeRecord::redeem(slot, subject, &digest, NOW)
            })
            .unwrap();
        assert_eq!(r, crate::state::Redeem::Gone);
    }
}
