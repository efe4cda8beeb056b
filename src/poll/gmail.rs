//! The Gmail poller: one per connected mailbox.
//!
//! A round makes sure the access token is fresh (refreshing it shortly before it expires, and
//! once more if Gmail refuses it anyway), identifies the mailbox now and then
//! (`users.getProfile`, linked to a person by address), and reads the vacation responder. A
//! revoked grant ends polling with the error on the connection; the refreshed access token is
//! sealed back into the connection so a restart does not refresh again.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::rounds::{self, Chexer, Failure, RoundsContext, Seen};
use crate::crypto::SecretKey;
use crate::domain::{GmailPart, PartPatch, PersonCard, Source, StatusPatch, now};
use crate::sources::gmail::{GmailClient, GmailCredentials, GmailError};
use crate::store::entity::connection;
use crate::store::{NewIdentity, Store};

/// Rounds between two profile reads (the address behind a grant does not change; this catches a
/// grant replaced by another mailbox's).
const PROFILE_EVERY: u64 = 20;

pub async fn poll_connection(ctx: RoundsContext, conn: connection::Model, stop: CancellationToken) {
    let Some(creds) = ctx
        .key
        .open(&conn.credential_ciphertext)
        .ok()
        .and_then(|s| serde_json::from_str::<GmailCredentials>(&s).ok())
    else {
        tracing::error!(
            connection = conn.id,
            "cannot open the Gmail credentials; is CHEX_SECRET_KEY the one they were stored under?"
        );
        let _ = ctx
            .store
            .set_connection_status(conn.id, "error", Some("credentials cannot be decrypted"))
            .await;
        return;
    };
    let chexer = GmailChexer {
        client: ctx.gmail.clone(),
        store: ctx.store.clone(),
        key: ctx.key.clone(),
        conn: conn.clone(),
        creds,
        person: None,
        rounds: 0,
    };
    let interval = ctx.gmail_interval;
    rounds::run(chexer, ctx, conn, interval, stop).await;
}

pub struct GmailChexer {
    client: GmailClient,
    store: Store,
    key: SecretKey,
    conn: connection::Model,
    creds: GmailCredentials,
    person: Option<Arc<PersonCard>>,
    rounds: u64,
}

impl Chexer for GmailChexer {
    fn source(&self) -> Source {
        Source::Gmail
    }

    async fn round(&mut self) -> Result<Seen, Failure> {
        let enabled = self
            .store
            .checks(None, Some(self.conn.id), Some("gmail"))
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?
            .iter()
            .any(|c| c.enabled);
        if !enabled {
            return Ok(Vec::new());
        }
        if self.creds.usable_access_token(now()).is_none() {
            self.refresh().await?;
        }
        if self.rounds.is_multiple_of(PROFILE_EVERY) {
            self.identify().await?;
        }
        self.rounds += 1;
        self.load_link().await?;
        let vacation = match self.vacation().await {
            Err(GmailError::Unauthenticated) => {
                // Revoked or expired early: one refresh, then the grant is at fault.
                self.refresh().await?;
                self.vacation().await
            }
            other => other,
        }
        .map_err(failure)?;
        let Some(person) = self.person.clone() else {
            return Ok(Vec::new());
        };
        let mut part = GmailPart {
            address: self.conn.external_id.clone(),
            auto_reply: vacation.enable_auto_reply,
            out_of_office: false,
            subject: vacation.response_subject.clone().unwrap_or_default(),
            since: vacation.since(),
            until: vacation.until(),
            stale: false,
        };
        part.settle(now());
        Ok(vec![(
            person,
            StatusPatch {
                gmail: Some(PartPatch::Set(Box::new(part))),
                ..StatusPatch::default()
            },
        )])
    }

    fn linked(&self) -> Vec<Arc<PersonCard>> {
        self.person.iter().cloned().collect()
    }

    fn stale(&self) -> StatusPatch {
        StatusPatch {
            gmail: Some(PartPatch::Stale),
            ..StatusPatch::default()
        }
    }
}

impl GmailChexer {
    async fn vacation(&self) -> Result<crate::sources::gmail::types::VacationSettings, GmailError> {
        let token = self.creds.access_token.as_deref().unwrap_or_default();
        self.client.vacation(token).await
    }

    async fn refresh(&mut self) -> Result<(), Failure> {
        self.client
            .refresh(&mut self.creds)
            .await
            .map_err(failure)?;
        let sealed = serde_json::to_string(&self.creds)
            .map(|s| self.key.seal(&s))
            .map_err(|e| Failure::Transient(e.to_string()))?;
        if let Err(e) = self
            .store
            .store_refreshed_credential(self.conn.id, sealed)
            .await
        {
            // Polling goes on with the token in memory; the next start refreshes again.
            tracing::warn!(connection = self.conn.id, error = %e, "could not store the refreshed access token");
        }
        Ok(())
    }

    /// Reads the mailbox's address and links it to a person.
    async fn identify(&mut self) -> Result<(), Failure> {
        let token = self.creds.access_token.clone().unwrap_or_default();
        let profile = match self.client.profile(&token).await {
            Err(GmailError::Unauthenticated) => {
                self.refresh().await?;
                let token = self.creds.access_token.clone().unwrap_or_default();
                self.client.profile(&token).await
            }
            other => other,
        }
        .map_err(failure)?;
        let address = profile.email_address.to_lowercase();
        self.store
            .sync_identities(
                self.conn.id,
                self.conn.organization_id,
                &[NewIdentity {
                    external_id: address.clone(),
                    email: Some(address),
                    display_name: profile.email_address.clone(),
                }],
            )
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        Ok(())
    }

    /// The person the mailbox belongs to, read every round so an admin's pin applies at once.
    async fn load_link(&mut self) -> Result<(), Failure> {
        let ids = self
            .store
            .identities(self.conn.id)
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        let person_id = ids.iter().find_map(|i| i.person_id);
        self.person = match person_id {
            Some(id) => self
                .store
                .person(id)
                .await
                .map_err(|e| Failure::Transient(format!("store: {e}")))?
                .map(|r| Arc::new(r.card())),
            None => None,
        };
        Ok(())
    }
}

fn failure(e: GmailError) -> Failure {
    match e {
        GmailError::RateLimited { retry_after } => Failure::RateLimited(retry_after),
        GmailError::Unauthenticated => Failure::Credential(
            "unauthenticated: Gmail refused a freshly refreshed access token".into(),
        ),
        e if e.is_credential_error() => Failure::Credential(e.to_string()),
        e => Failure::Transient(e.code()),
    }
}
